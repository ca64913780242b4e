/* test_integ_locks.c - file locks across two mounts of one cluster.
 *
 * `chainfs up` starts the cluster and mount A; the first test starts a
 * second `chainfs mount` process (mount B) against the same mgmtd. Lock
 * holders are child processes driven over pipes, each with its own file
 * descriptors, so a lock taken through A and a request through B are two
 * processes on two mounts, as on two hosts.
 *
 * Covered: a lock (POSIX, OFD, flock) on A blocks B; a script of lock
 * operations (split, merge, upgrade, downgrade, F_GETLK reporting, close
 * of another descriptor dropping a process's POSIX locks but not OFD
 * locks, flock conversion) gives the same results on the mounts as on a
 * local directory (the kernel's own lock code is the oracle, in the same
 * run); F_SETLKW on B waits and wakes when A's holder unlocks, and a
 * signal interrupts it with EINTR; waiters blocked in F_SETLKW do not
 * stop the mount from serving other requests (the session loop hands the
 * reading over before a blocking request); SQLite writers on both mounts keep a
 * consistent database (integrity_check, counter == committed increments);
 * kill -9 of mount B releases the locks its processes held, within the
 * mgmtd heartbeat timeout plus a session check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "integ_env.h"
#include "testenv.h"

static struct integ env;
static char mnt_b[600];
static pid_t mount_b_pid;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_mounted(const char *m)
{
	struct stat a, b;
	char parent[700];
	snprintf(parent, sizeof(parent), "%s/..", m);
	return stat(m, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev && a.st_ino == 1;
}

/* ---- mount B ---- */

/* Starts `chainfs mount` on DIR/NAME (into MNT) against the cluster of
 * env; ZERO_CACHE 1: --entry-timeout 0 --attr-timeout 0; 2: --threads 1. */
static pid_t start_mount(const char *name, char *mnt, int zero_cache)
{
	char cid[128], port[32], mg[64], secret[700], log[700];
	integ_conf_get(&env, "cluster_id", cid, sizeof(cid));
	integ_conf_get(&env, "mgmtd_port", port, sizeof(port));
	snprintf(mg, sizeof(mg), "127.0.0.1:%s", port);
	snprintf(secret, sizeof(secret), "%s/secret", env.data);
	snprintf(mnt, 600, "%s/%s", env.dir, name);
	snprintf(log, sizeof(log), "%s/%s.log", env.dir, name);
	mkdir(mnt, 0755);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0);
		if (zero_cache == 2)
			execl(testenv_chainfs(), "chainfs", "mount", "--mgmtd", mg, "--cluster-id",
			      cid, "--secret-file", secret, "--log-file", log, "--threads", "1", mnt,
			      (char *)NULL);
		else if (zero_cache)
			execl(testenv_chainfs(), "chainfs", "mount", "--mgmtd", mg, "--cluster-id",
			      cid, "--secret-file", secret, "--log-file", log, "--entry-timeout",
			      "0", "--attr-timeout", "0", mnt, (char *)NULL);
		else
			execl(testenv_chainfs(), "chainfs", "mount", "--mgmtd", mg, "--cluster-id",
			      cid, "--secret-file", secret, "--log-file", log, mnt, (char *)NULL);
		_exit(127);
	}
	long long deadline = now_ms() + 60000;
	while (!is_mounted(mnt) && now_ms() < deadline) {
		int st;
		assert_int_equal(waitpid(pid, &st, WNOHANG), 0); /* still running */
		usleep(50000);
	}
	assert_true(is_mounted(mnt));
	return pid;
}

static void start_mount_b(void)
{
	mount_b_pid = start_mount("mntb", mnt_b, 0);
}

static void unmount_at(const char *m)
{
	char *argv[] = {"fusermount3", "-u", "-z", (char *)m, NULL};
	integ_run(argv, NULL, NULL, 20000);
}

static void unmount_b(void)
{
	unmount_at(mnt_b);
}

static void stop_mount(const char *m, pid_t *pid)
{
	if (*pid <= 0)
		return;
	unmount_at(m);
	kill(*pid, SIGTERM);
	int st;
	long long deadline = now_ms() + 20000;
	while (waitpid(*pid, &st, WNOHANG) == 0 && now_ms() < deadline)
		usleep(50000);
	if (waitpid(*pid, &st, WNOHANG) == 0) {
		kill(*pid, SIGKILL);
		waitpid(*pid, &st, 0);
	}
	*pid = 0;
}

static void stop_mount_b(void)
{
	stop_mount(mnt_b, &mount_b_pid);
}

static void pa(const char *rel, char *out)
{
	integ_path(&env, rel, out, 700);
}
static void pb(const char *rel, char *out)
{
	snprintf(out, 700, "%s/%s", mnt_b, rel);
}

/* ---- lock agents: child processes that run lock commands ---- */

enum {
	C_OPEN,
	C_OPEN2,
	C_CLOSE2,
	C_SETLK,
	C_SETLKW,
	C_GETLK,
	C_OFD_SETLK,
	C_OFD_GETLK,
	C_FLOCK,
	C_QUIT
};

struct cmd {
	int op, type; /* type: F_RDLCK.. or LOCK_* for flock */
	long long start, len;
	char path[700];
};

struct res {
	int rc, err; /* return value, errno */
	int type;    /* GETLK: l_type */
	long long start, len;
	int pid; /* GETLK: l_pid */
	int self_pid;
};

struct agent {
	pid_t pid;
	int to, from;
};

static void agent_loop(int in, int out)
{
	int fd = -1, fd2 = -1;
	struct cmd c;
	signal(SIGALRM, SIG_IGN);
	while (read(in, &c, sizeof(c)) == (ssize_t)sizeof(c)) {
		struct res r = {0};
		struct flock fl = {.l_type = (short)c.type,
		                   .l_whence = SEEK_SET,
		                   .l_start = c.start,
		                   .l_len = c.len};
		r.self_pid = getpid();
		switch (c.op) {
		case C_OPEN:
			r.rc = fd = open(c.path, O_RDWR | O_CREAT, 0666);
			break;
		case C_OPEN2:
			r.rc = fd2 = open(c.path, O_RDWR);
			break;
		case C_CLOSE2:
			r.rc = close(fd2);
			break;
		case C_SETLK:
		case C_SETLKW:
			r.rc = fcntl(fd, c.op == C_SETLK ? F_SETLK : F_SETLKW, &fl);
			break;
		case C_OFD_SETLK:
			r.rc = fcntl(fd, F_OFD_SETLK, &fl);
			break;
		case C_GETLK:
		case C_OFD_GETLK:
			r.rc = fcntl(fd, c.op == C_GETLK ? F_GETLK : F_OFD_GETLK, &fl);
			r.type = fl.l_type;
			r.start = fl.l_start;
			r.len = fl.l_len;
			r.pid = fl.l_pid;
			break;
		case C_FLOCK:
			r.rc = flock(fd, c.type);
			break;
		case C_QUIT:
			_exit(0);
		}
		r.err = r.rc < 0 ? errno : 0;
		if (write(out, &r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(1);
	}
	_exit(0);
}

static void agent_start(struct agent *a)
{
	int p1[2], p2[2];
	assert_int_equal(pipe(p1), 0);
	assert_int_equal(pipe(p2), 0);
	a->pid = fork();
	assert_true(a->pid >= 0);
	if (a->pid == 0) {
		close(p1[1]);
		close(p2[0]);
		agent_loop(p1[0], p2[1]);
	}
	close(p1[0]);
	close(p2[1]);
	a->to = p1[1];
	a->from = p2[0];
}

static void agent_send(struct agent *a, int op, int type, long long start, long long len,
                       const char *path)
{
	struct cmd c = {op, type, start, len, ""};
	if (path)
		snprintf(c.path, sizeof(c.path), "%s", path);
	assert_int_equal(write(a->to, &c, sizeof(c)), (ssize_t)sizeof(c));
}

/* Waits up to MS for the reply; 1 when it came. */
static int agent_wait(struct agent *a, struct res *r, int ms)
{
	fd_set s;
	FD_ZERO(&s);
	FD_SET(a->from, &s);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	if (select(a->from + 1, &s, NULL, NULL, &tv) <= 0)
		return 0;
	assert_int_equal(read(a->from, r, sizeof(*r)), (ssize_t)sizeof(*r));
	return 1;
}

static struct res agent_do(struct agent *a, int op, int type, long long start, long long len,
                           const char *path)
{
	struct res r;
	agent_send(a, op, type, start, len, path);
	assert_true(agent_wait(a, &r, 30000));
	return r;
}

static void agent_stop(struct agent *a)
{
	int st;
	kill(a->pid, SIGKILL);
	waitpid(a->pid, &st, 0);
	close(a->to);
	close(a->from);
}

/* ---- tests ---- */

static void test_mount_b_starts(void **state)
{
	char a[700], b[700];
	start_mount_b();
	pa("hello", a);
	pb("hello", b);
	int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "hi", 2), 2);
	assert_int_equal(close(fd), 0);
	struct stat st;
	assert_int_equal(stat(b, &st), 0);
	assert_int_equal(st.st_size, 2);
}

static void test_lock_blocks_other_mount(void **state)
{
	char a[700], b[700];
	struct agent x, y;
	struct res r;
	pa("blk", a);
	pb("blk", b);
	agent_start(&x);
	agent_start(&y);
	assert_true(agent_do(&x, C_OPEN, 0, 0, 0, a).rc >= 0);
	assert_true(agent_do(&y, C_OPEN, 0, 0, 0, b).rc >= 0);
	/* POSIX */
	assert_int_equal(agent_do(&x, C_SETLK, F_WRLCK, 0, 100, NULL).rc, 0);
	r = agent_do(&y, C_SETLK, F_RDLCK, 50, 10, NULL);
	assert_int_equal(r.rc, -1);
	assert_true(r.err == EAGAIN || r.err == EACCES);
	r = agent_do(&y, C_GETLK, F_RDLCK, 50, 10, NULL);
	assert_int_equal(r.type, F_WRLCK);
	assert_int_equal(r.start, 0);
	assert_int_equal(r.len, 100);
	assert_int_equal(r.pid, x.pid);
	assert_int_equal(agent_do(&y, C_SETLK, F_WRLCK, 100, 10, NULL).rc, 0); /* disjoint */
	/* F_SETLKW waits, and wakes when X unlocks. */
	agent_send(&y, C_SETLKW, F_WRLCK, 0, 10, NULL);
	assert_false(agent_wait(&y, &r, 1000));
	assert_int_equal(agent_do(&x, C_SETLK, F_UNLCK, 0, 0, NULL).rc, 0);
	assert_true(agent_wait(&y, &r, 10000));
	assert_int_equal(r.rc, 0);
	/* OFD locks */
	r = agent_do(&x, C_OFD_SETLK, F_WRLCK, 0, 5, NULL);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err, EAGAIN);
	assert_int_equal(agent_do(&x, C_OFD_SETLK, F_WRLCK, 1000, 5, NULL).rc, 0);
	r = agent_do(&y, C_OFD_SETLK, F_RDLCK, 1002, 1, NULL);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err, EAGAIN);
	/* flock */
	assert_int_equal(agent_do(&x, C_FLOCK, LOCK_EX | LOCK_NB, 0, 0, NULL).rc, 0);
	r = agent_do(&y, C_FLOCK, LOCK_SH | LOCK_NB, 0, 0, NULL);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.err, EWOULDBLOCK);
	agent_send(&y, C_FLOCK, LOCK_SH, 0, 0, NULL);
	assert_false(agent_wait(&y, &r, 1000));
	assert_int_equal(agent_do(&x, C_FLOCK, LOCK_UN, 0, 0, NULL).rc, 0);
	assert_true(agent_wait(&y, &r, 10000));
	assert_int_equal(r.rc, 0);
	/* A holder that exits drops everything (close -> flush / release). */
	agent_stop(&x);
	agent_start(&x);
	assert_true(agent_do(&x, C_OPEN, 0, 0, 0, a).rc >= 0);
	agent_stop(&y);
	assert_int_equal(agent_do(&x, C_SETLK, F_WRLCK, 0, 0, NULL).rc, 0);
	/* flock and OFD locks go with the open file description, whose
	 * RELEASE the kernel sends asynchronously after the last close:
	 * allow it a moment (docs/posix.md, "Locks"). */
	long long t0 = now_ms();
	while (agent_do(&x, C_FLOCK, LOCK_EX | LOCK_NB, 0, 0, NULL).rc != 0 && now_ms() - t0 < 5000)
		usleep(10000);
	assert_int_equal(agent_do(&x, C_FLOCK, LOCK_EX | LOCK_NB, 0, 0, NULL).rc, 0);
	/* (an OFD lock conflicts with the process's own POSIX lock) */
	assert_int_equal(agent_do(&x, C_SETLK, F_UNLCK, 0, 0, NULL).rc, 0);
	assert_int_equal(agent_do(&x, C_OFD_SETLK, F_WRLCK, 0, 0, NULL).rc, 0);
	agent_stop(&x);
}

/* A script of operations by two processes; each result is compared with
 * the local directory's. */
struct step {
	int who, op, type;
	long long start, len;
	int check_pid; /* GETLK: compare l_pid (mapped to the agent) */
};

static const struct step SCRIPT[] = {
    {0, C_SETLK, F_WRLCK, 0, 100, 0},
    {1, C_GETLK, F_RDLCK, 10, 1, 1},
    {0, C_SETLK, F_UNLCK, 40, 20, 0}, /* split */
    {1, C_GETLK, F_WRLCK, 30, 40, 1}, /* first piece */
    {1, C_SETLK, F_WRLCK, 45, 10, 0}, /* in the hole */
    {1, C_GETLK, F_WRLCK, 61, 1, 1},
    {0, C_SETLK, F_RDLCK, 0, 40, 0}, /* downgrade */
    {1, C_SETLK, F_RDLCK, 0, 10, 0},
    {0, C_SETLK, F_WRLCK, 5, 1, 0},  /* upgrade against a reader */
    {0, C_SETLK, F_WRLCK, 60, 0, 0}, /* to EOF, merges with [60,99] */
    {1, C_GETLK, F_RDLCK, 200, 5, 1},
    {1, C_GETLK, F_WRLCK, 0, 0, 1},  /* first conflicting in order */
    {0, C_SETLK, F_RDLCK, 40, 5, 0}, /* conflicts with 1's [45,54]? no */
    {0, C_SETLK, F_RDLCK, 50, 5, 0}, /* conflicts */
    {1, C_SETLK, F_UNLCK, 0, 0, 0},
    {0, C_SETLK, F_WRLCK, 40, 20, 0}, /* now fills the hole: one lock */
    {1, C_GETLK, F_WRLCK, 1, 1, 1},
    {1, C_GETLK, F_RDLCK, 10, 0, 1},
    {0, C_OPEN2, 0, 0, 0, 0},
    {0, C_CLOSE2, 0, 0, 0, 0}, /* close of any fd drops POSIX locks */
    {1, C_GETLK, F_WRLCK, 0, 0, 1},
    {0, C_OFD_SETLK, F_WRLCK, 10, 10, 0},
    {1, C_OFD_SETLK, F_RDLCK, 15, 1, 0},
    {1, C_OFD_GETLK, F_RDLCK, 0, 0, 0},
    {0, C_OPEN2, 0, 0, 0, 0},
    {0, C_CLOSE2, 0, 0, 0, 0}, /* OFD locks survive it */
    {1, C_OFD_GETLK, F_WRLCK, 0, 0, 0},
    {1, C_SETLK, F_WRLCK, 12, 1, 0}, /* POSIX vs OFD conflict */
    {0, C_OFD_SETLK, F_UNLCK, 0, 0, 0},
    {0, C_FLOCK, LOCK_SH | LOCK_NB, 0, 0, 0},
    {1, C_FLOCK, LOCK_SH | LOCK_NB, 0, 0, 0},
    {0, C_FLOCK, LOCK_EX | LOCK_NB, 0, 0, 0}, /* fails, and drops 0's lock */
    {1, C_FLOCK, LOCK_EX | LOCK_NB, 0, 0, 0}, /* so this succeeds */
    {1, C_SETLK, F_WRLCK, 0, 0, 0},           /* flock and POSIX are independent */
    {0, C_FLOCK, LOCK_SH | LOCK_NB, 0, 0, 0},
};
#define NSTEPS (sizeof(SCRIPT) / sizeof(SCRIPT[0]))

static void run_script(const char *p0, const char *p1, struct res *out)
{
	struct agent ag[2];
	agent_start(&ag[0]);
	agent_start(&ag[1]);
	assert_true(agent_do(&ag[0], C_OPEN, 0, 0, 0, p0).rc >= 0);
	assert_true(agent_do(&ag[1], C_OPEN, 0, 0, 0, p1).rc >= 0);
	for (size_t i = 0; i < NSTEPS; i++) {
		const struct step *s = &SCRIPT[i];
		out[i] = agent_do(&ag[s->who], s->op, s->type, s->start, s->len,
		                  s->op == C_OPEN2 ? p0 : NULL);
		if (out[i].rc > 0)
			out[i].rc = 0; /* an fd number */
		/* l_pid as the agent index (or -1: someone else). */
		int pid = out[i].pid;
		out[i].pid = pid == ag[0].pid ? 0 : pid == ag[1].pid ? 1 : -1;
		if (!s->check_pid)
			out[i].pid = 0;
		if (out[i].type == F_UNLCK)
			out[i].start = out[i].len = out[i].pid = 0;
		out[i].self_pid = 0;
		if (out[i].err == EACCES)
			out[i].err = EAGAIN; /* both are allowed for F_SETLK */
	}
	agent_stop(&ag[0]);
	agent_stop(&ag[1]);
}

static void test_semantics_match_local(void **state)
{
	char local[700], a[700], b[700];
	struct res want[NSTEPS], got[NSTEPS];
	snprintf(local, sizeof(local), "%s/local-lockfile", env.dir);
	run_script(local, local, want);
	pa("script", a);
	pb("script", b);
	run_script(a, b, got);
	for (size_t i = 0; i < NSTEPS; i++) {
		if (want[i].rc != got[i].rc || want[i].err != got[i].err ||
		    want[i].type != got[i].type || want[i].start != got[i].start ||
		    want[i].len != got[i].len || want[i].pid != got[i].pid)
			fprintf(stderr,
			        "step %zu: local rc=%d err=%d type=%d [%lld,+%lld] pid=%d; "
			        "chainfs rc=%d err=%d type=%d [%lld,+%lld] pid=%d\n",
			        i, want[i].rc, want[i].err, want[i].type, want[i].start,
			        want[i].len, want[i].pid, got[i].rc, got[i].err, got[i].type,
			        got[i].start, got[i].len, got[i].pid);
		assert_int_equal(want[i].rc, got[i].rc);
		assert_int_equal(want[i].err, got[i].err);
		assert_int_equal(want[i].type, got[i].type);
		assert_int_equal(want[i].start, got[i].start);
		assert_int_equal(want[i].len, got[i].len);
		assert_int_equal(want[i].pid, got[i].pid);
	}
}

static void on_alarm(int sig)
{
	(void)sig;
}

static void test_setlkw_interrupted(void **state)
{
	char a[700], b[700];
	struct agent x;
	pa("intr", a);
	pb("intr", b);
	agent_start(&x);
	assert_true(agent_do(&x, C_OPEN, 0, 0, 0, a).rc >= 0);
	assert_int_equal(agent_do(&x, C_SETLK, F_WRLCK, 0, 0, NULL).rc, 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART */
		sigaction(SIGALRM, &sa, NULL);
		int fd = open(b, O_RDWR);
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		alarm(2);
		int rc = fcntl(fd, F_SETLKW, &fl);
		_exit(rc == -1 && errno == EINTR ? 0 : 1);
	}
	int st;
	long long t0 = now_ms();
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_true(now_ms() - t0 < 15000);
	agent_stop(&x);
}

/* F_SETLKW waiters hold mount A's request threads (each polls meta until
 * the lock frees): the session loop (src/fuse/fuse_loop.h) must keep
 * reading and serving other requests meanwhile, so creates, stats,
 * unlinks and a listing by another process on the same mount finish, and
 * every waiter gets the lock once the holder lets go. */
#define STALL_WAITERS 4
#define STALL_FILES   50

static int stall_ops(const char *dir)
{
	char p[800];
	if (mkdir(dir, 0755) < 0)
		return 1;
	for (int i = 0; i < STALL_FILES; i++) {
		snprintf(p, sizeof(p), "%s/f%d", dir, i);
		int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0 || close(fd) < 0)
			return 2;
	}
	for (int i = 0; i < STALL_FILES; i++) {
		struct stat st;
		snprintf(p, sizeof(p), "%s/f%d", dir, i);
		if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
			return 3;
	}
	snprintf(p, sizeof(p), "ls %s | wc -l | grep -qx %d", dir, STALL_FILES);
	if (system(p) != 0)
		return 4;
	for (int i = 0; i < STALL_FILES; i++) {
		snprintf(p, sizeof(p), "%s/f%d", dir, i);
		if (unlink(p) < 0)
			return 5;
	}
	return rmdir(dir) < 0 ? 6 : 0;
}

static void test_waiters_do_not_stall_mount(void **state)
{
	char a[700], dir[700];
	struct agent x;
	pid_t w[STALL_WAITERS];
	pa("stall", a);
	pa("stall-dir", dir);
	agent_start(&x);
	assert_true(agent_do(&x, C_OPEN, 0, 0, 0, a).rc >= 0);
	assert_int_equal(agent_do(&x, C_SETLK, F_WRLCK, 0, 0, NULL).rc, 0);
	for (int i = 0; i < STALL_WAITERS; i++) {
		w[i] = fork();
		assert_true(w[i] >= 0);
		if (w[i] == 0) {
			int fd = open(a, O_RDWR);
			struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
			_exit(fd >= 0 && fcntl(fd, F_SETLKW, &fl) == 0 ? 0 : 1);
		}
	}
	usleep(500 * 1000); /* the waiters are in their requests by now */
	pid_t op = fork();
	assert_true(op >= 0);
	if (op == 0)
		_exit(stall_ops(dir));
	int st = 0, done = 0;
	long long t0 = now_ms();
	while (!done && now_ms() - t0 < 30000) {
		done = waitpid(op, &st, WNOHANG) == op;
		if (!done)
			usleep(20 * 1000);
	}
	/* Let the waiters go before asserting, so a failure does not leave
	 * requests hanging on the mount. */
	assert_int_equal(agent_do(&x, C_SETLK, F_UNLCK, 0, 0, NULL).rc, 0);
	if (!done) {
		kill(op, SIGKILL);
		waitpid(op, &st, 0);
	}
	assert_true(done);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	for (int i = 0; i < STALL_WAITERS; i++) {
		int ws;
		assert_int_equal(waitpid(w[i], &ws, 0), w[i]);
		assert_true(WIFEXITED(ws));
		assert_int_equal(WEXITSTATUS(ws), 0);
	}
	agent_stop(&x);
}

/* A shared mapping on mount B sees what mount A wrote under a lock once
 * B holds the lock: the grant drops the file's pages (fuse_fs.c
 * lock_granted). A same-size rewrite keeps the size, so nothing else drops
 * them now that the mount does not ask for auto_inval_data; without the
 * drop B's mapping kept A's old bytes (SQLite with mmap_size does this). */
static void test_mapping_after_grant(void **state)
{
	enum { N = 256 * 1024 }; /* chunk-backed, not inline */
	char a[700], b[700];
	pa("mapped", a);
	pb("mapped", b);
	char *buf = malloc(N);
	assert_non_null(buf);
	memset(buf, 'a', N);
	int fa = open(a, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fa >= 0);
	assert_int_equal(pwrite(fa, buf, N, 0), N);
	assert_int_equal(fsync(fa), 0);
	int fb = open(b, O_RDWR);
	assert_true(fb >= 0);
	volatile const char *m = mmap(NULL, N, PROT_READ, MAP_SHARED, fb, 0);
	assert_true(m != MAP_FAILED);
	assert_int_equal(m[0], 'a');
	assert_int_equal(m[N - 1], 'a');
	/* A rewrites every byte under its lock, keeping the size. */
	assert_int_equal(flock(fa, LOCK_EX), 0);
	memset(buf, 'b', N);
	assert_int_equal(pwrite(fa, buf, N, 0), N);
	assert_int_equal(fsync(fa), 0);
	assert_int_equal(flock(fa, LOCK_UN), 0);
	/* B takes the lock, looks at the file as SQLite does, reads the map. */
	assert_int_equal(flock(fb, LOCK_EX), 0);
	struct stat st;
	assert_int_equal(fstat(fb, &st), 0);
	assert_int_equal(st.st_size, N);
	assert_int_equal(m[0], 'b');
	assert_int_equal(m[N / 2], 'b');
	assert_int_equal(m[N - 1], 'b');
	assert_int_equal(flock(fb, LOCK_UN), 0);
	munmap((void *)m, N);
	close(fb);
	close(fa);
	free(buf);
}

/* Writers on both mounts increment one counter through sqlite3. */
#define SQL_WRITERS_PER_MOUNT 2
#define SQL_INCREMENTS        15

static char mnt_c[600], mnt_d[600];
static pid_t mount_c_pid, mount_d_pid;

static void test_sqlite_two_mounts(void **state)
{
	char da[700], db[700], cmd[2048], log[700];
	/* Two mounts with the default name and attribute caches: a granted
	 * lock drops the file's cached attributes, and a name whose inode is
	 * gone answers ESTALE so the kernel looks it up again (docs/posix.md,
	 * "Locks"). */
	mount_c_pid = start_mount("mntc", mnt_c, 0);
	mount_d_pid = start_mount("mntd", mnt_d, 0);
	snprintf(da, sizeof(da), "%s/app.db", mnt_c);
	snprintf(db, sizeof(db), "%s/app.db", mnt_d);
	snprintf(cmd, sizeof(cmd),
	         "sqlite3 '%s' 'CREATE TABLE c(n INTEGER); INSERT INTO c VALUES(0);'", da);
	assert_int_equal(system(cmd), 0);
	pid_t w[2 * SQL_WRITERS_PER_MOUNT];
	for (int i = 0; i < 2 * SQL_WRITERS_PER_MOUNT; i++) {
		snprintf(log, sizeof(log), "%s/sql-writer-%d", env.dir, i);
		snprintf(
		    cmd, sizeof(cmd),
		    "for i in $(seq %d); do sqlite3 -cmd '.timeout 60000' '%s' "
		    "'BEGIN IMMEDIATE; UPDATE c SET n = n + 1; COMMIT;' && echo ok; done > '%s' "
		    "2>&1",
		    SQL_INCREMENTS, i % 2 ? db : da, log);
		w[i] = fork();
		assert_true(w[i] >= 0);
		if (w[i] == 0) {
			execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
			_exit(127);
		}
	}
	for (int i = 0; i < 2 * SQL_WRITERS_PER_MOUNT; i++) {
		int st;
		assert_int_equal(waitpid(w[i], &st, 0), w[i]);
	}
	int committed = 0;
	for (int i = 0; i < 2 * SQL_WRITERS_PER_MOUNT; i++) {
		char line[512];
		snprintf(log, sizeof(log), "%s/sql-writer-%d", env.dir, i);
		FILE *f = fopen(log, "r");
		assert_non_null(f);
		while (fgets(line, sizeof(line), f)) {
			if (!strcmp(line, "ok\n"))
				committed++;
			else
				fprintf(stderr, "writer %d: %s", i, line);
		}
		fclose(f);
	}
	/* Every transaction commits: a writer that sees another mount's stale
	 * journal or size fails with "unable to open database file" instead. */
	assert_int_equal(committed, 2 * SQL_WRITERS_PER_MOUNT * SQL_INCREMENTS);
	/* Read back through both mounts. */
	for (int m = 0; m < 2; m++) {
		char out[256] = "";
		snprintf(cmd, sizeof(cmd),
		         "sqlite3 '%s' 'PRAGMA integrity_check; SELECT n FROM c;'", m ? db : da);
		FILE *f = popen(cmd, "r");
		assert_non_null(f);
		size_t n = fread(out, 1, sizeof(out) - 1, f);
		out[n] = 0;
		pclose(f);
		char want[64];
		snprintf(want, sizeof(want), "ok\n%d\n", committed);
		if (strcmp(out, want))
			fprintf(stderr, "mount %c: got '%s' want '%s'\n", 'A' + m, out, want);
		assert_string_equal(out, want);
	}
	assert_int_equal(committed, 2 * SQL_WRITERS_PER_MOUNT * SQL_INCREMENTS);
	stop_mount(mnt_c, &mount_c_pid);
	stop_mount(mnt_d, &mount_d_pid);
}

/* The unmount guard (fuse_fs.c). Mount S has one worker; it waits in a
 * blocking lock (held through mount A), a stat of a new name in D queues
 * behind it holding D's lock in the kernel, and a foreign change to D
 * makes S's poll thread notify D: a wait for that lock. SIGTERM then must
 * still end S within a bound. Before the guard it never did: the loop
 * joined the worker, the worker (granted once the holder went) waited for
 * poll_mu, and the poll thread stayed in fuse_reverse_inval_entry. */
static void abort_mount_at(const char *m)
{
	char line[4096], path[128];
	unsigned maj, min;
	FILE *f = fopen("/proc/self/mountinfo", "r");
	while (f && fgets(line, sizeof(line), f)) {
		char mp[700];
		if (sscanf(line, "%*u %*u %u:%u %*s %699s", &maj, &min, mp) == 3 && !strcmp(mp, m)) {
			snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort", min);
			int fd = open(path, O_WRONLY);
			if (fd >= 0) {
				(void)!write(fd, "1", 1);
				close(fd);
			}
		}
	}
	if (f)
		fclose(f);
}

static void test_sigterm_with_stuck_notify(void **state)
{
	char mnt_s[600], a[700], s_lk[700], s_new[700], foreign[700];
	pid_t spid = start_mount("mnts", mnt_s, 2);
	pa("stuckdir", a);
	assert_int_equal(mkdir(a, 0755), 0);
	pa("stuckdir/lk", a);
	int fd = open(a, O_CREAT | O_RDWR, 0644);
	assert_true(fd >= 0);
	close(fd);
	snprintf(s_lk, sizeof(s_lk), "%s/stuckdir/lk", mnt_s);
	snprintf(s_new, sizeof(s_new), "%s/stuckdir/new", mnt_s);
	struct stat st;
	assert_int_equal(stat(s_lk, &st), 0); /* S tracks stuckdir's names */
	struct agent holder, waiter;
	agent_start(&holder);
	assert_true(agent_do(&holder, C_OPEN, 0, 0, 0, a).rc >= 0);
	assert_int_equal(agent_do(&holder, C_SETLK, F_WRLCK, 0, 0, NULL).rc, 0);
	agent_start(&waiter);
	assert_true(agent_do(&waiter, C_OPEN, 0, 0, 0, s_lk).rc >= 0);
	agent_send(&waiter, C_SETLKW, F_WRLCK, 0, 0, NULL); /* S's only worker */
	usleep(300000);
	pid_t looker = fork();
	assert_true(looker >= 0);
	if (looker == 0) {
		stat(s_new, &st); /* queued: holds stuckdir's lock in the kernel */
		_exit(0);
	}
	usleep(300000);
	pa("stuckdir/foreign", foreign);
	fd = open(foreign, O_CREAT | O_WRONLY, 0644); /* S's poll notifies stuckdir */
	assert_true(fd >= 0);
	close(fd);
	usleep(1000000);
	long long t0 = now_ms();
	assert_int_equal(kill(spid, SIGTERM), 0);
	int ws, gone = 0;
	while (!(gone = waitpid(spid, &ws, WNOHANG) == spid) && now_ms() - t0 < 20000)
		usleep(50000);
	fprintf(stderr, "mount with a stuck notification: %s after %lld ms\n",
	        gone ? "exited" : "still running", now_ms() - t0);
	if (!gone) { /* what the guard should have done: free the test */
		abort_mount_at(mnt_s);
		kill(spid, SIGKILL);
		waitpid(spid, &ws, 0);
	}
	agent_stop(&holder);
	agent_stop(&waiter);
	waitpid(looker, &ws, 0);
	unmount_at(mnt_s);
	assert_true(gone);
	assert_false(is_mounted(mnt_s));
}

static void test_kill9_mount_releases_locks(void **state)
{
	char a[700], b[700];
	struct agent x, y;
	pa("k9", a);
	pb("k9", b);
	agent_start(&y);
	assert_true(agent_do(&y, C_OPEN, 0, 0, 0, b).rc >= 0);
	assert_int_equal(agent_do(&y, C_SETLK, F_WRLCK, 0, 0, NULL).rc, 0);
	assert_int_equal(agent_do(&y, C_FLOCK, LOCK_EX, 0, 0, NULL).rc, 0);
	agent_start(&x);
	assert_true(agent_do(&x, C_OPEN, 0, 0, 0, a).rc >= 0);
	assert_int_equal(agent_do(&x, C_SETLK, F_WRLCK, 0, 1, NULL).err, EAGAIN);
	assert_int_equal(kill(mount_b_pid, SIGKILL), 0);
	int st;
	waitpid(mount_b_pid, &st, 0);
	mount_b_pid = 0;
	long long t0 = now_ms();
	/* mgmtd declares the node failed after its heartbeat timeout (10 s),
	 * meta drops its locks at the next session check (5 s). */
	struct res r;
	do {
		usleep(250000);
		r = agent_do(&x, C_SETLK, F_WRLCK, 0, 1, NULL);
	} while (r.rc != 0 && now_ms() - t0 < 60000);
	fprintf(stderr, "locks of the killed mount released after %lld ms\n", now_ms() - t0);
	assert_int_equal(r.rc, 0);
	assert_int_equal(agent_do(&x, C_FLOCK, LOCK_EX | LOCK_NB, 0, 0, NULL).rc, 0);
	agent_stop(&x);
	agent_stop(&y);
	unmount_b();
}

static void test_stop_mount_b(void **state)
{
	stop_mount_b();
	assert_false(is_mounted(mnt_b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mount_b_starts),
	    cmocka_unit_test(test_lock_blocks_other_mount),
	    cmocka_unit_test(test_semantics_match_local),
	    cmocka_unit_test(test_setlkw_interrupted),
	    cmocka_unit_test(test_waiters_do_not_stall_mount),
	    cmocka_unit_test(test_sqlite_two_mounts),
	    cmocka_unit_test(test_mapping_after_grant),
	    cmocka_unit_test(test_sigterm_with_stuck_notify),
	    cmocka_unit_test(test_kill9_mount_releases_locks),
	    cmocka_unit_test(test_stop_mount_b),
	};
	int rc = integ_main(&env, "integ-locks", tests, sizeof(tests) / sizeof(tests[0]));
	stop_mount_b();
	stop_mount(mnt_c, &mount_c_pid);
	stop_mount(mnt_d, &mount_d_pid);
	return rc;
}
