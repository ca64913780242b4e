/* integ_env.c - chainfs up / down around integration tests (integ_env.h).
 *
 * Processes are found through the pid files `chainfs up` writes
 * (DATA/pids/ROLE.pid: "pid starttime"); a process counts as alive when
 * /proc/PID/stat still shows that start time and it is not a zombie.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/procstat.h"
#include "integ_env.h"
#include "testenv.h"

#define INTEG_MAX_PROCS 16

static struct integ *live; /* the cluster the atexit hook brings down */

void integ_require_fuse(void)
{
	if (access("/dev/fuse", F_OK) < 0) {
		fprintf(stderr, "skip: /dev/fuse is missing\n");
		exit(77);
	}
}

void integ_init(struct integ *e, const char *tag)
{
	memset(e, 0, sizeof(*e));
	e->dir = testenv_tmpdir(tag);
	chmod(e->dir, 0755);
	snprintf(e->data, sizeof(e->data), "%s/data", e->dir);
	snprintf(e->mnt, sizeof(e->mnt), "%s/mnt", e->dir);
}

void integ_path(const struct integ *e, const char *rel, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", e->mnt, rel);
}

void integ_conf_get(const struct integ *e, const char *key, char *out, size_t cap)
{
	char path[700], line[1024], k[64], v[900];
	snprintf(path, sizeof(path), "%s/cluster.conf", e->data);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	out[0] = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s = %899[^\n]", k, v) == 2 && !strcmp(k, key)) {
			size_t l = strlen(v) < cap - 1 ? strlen(v) : cap - 1;
			memcpy(out, v, l);
			out[l] = 0;
		}
	fclose(f);
	assert_true(out[0] != 0);
}

unsigned long long integ_meta_requests(const struct integ *e)
{
	return integ_role_requests(e, "meta_port");
}

unsigned long long integ_meta_requests_settled(const struct integ *e, unsigned quiet,
                                               uint64_t *t0_ns)
{
	uint64_t t = clock_mono_ns();
	unsigned long long a = integ_meta_requests(e);
	for (int i = 0; i < 40; i++) {
		clock_sleep_ms(250);
		uint64_t tb = clock_mono_ns();
		unsigned long long b = integ_meta_requests(e);
		/* QUIET per 250 ms of the window the two readings can span:
		 * on a loaded machine one call alone may take longer than the
		 * gap, and the polls go on meanwhile. */
		uint64_t span_ms = (clock_mono_ns() - t) / 1000000u;
		unsigned long long allowed = quiet * (span_ms > 250 ? span_ms / 250 : 1);
		int settled = b - a <= allowed;
		t = tb;
		a = b;
		if (settled)
			break;
	}
	if (t0_ns)
		*t0_ns = t;
	return a;
}

unsigned long long integ_role_requests(const struct integ *e, const char *port_key)
{
	char port[32], id[128], addr[64], secret[700], log[700];
	static int n;
	integ_conf_get(e, port_key, port, sizeof(port));
	integ_conf_get(e, "cluster_id", id, sizeof(id));
	snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
	snprintf(secret, sizeof(secret), "%s/secret", e->data);
	snprintf(log, sizeof(log), "%s/meta-requests-%d.out", e->dir, n++);
	char *argv[] = {(char *)testenv_chainfs(), "admin", "rpc-stats", "--addr", addr,
	                "--cluster-id", id, "--secret-file", secret, NULL};
	assert_int_equal(integ_run(argv, NULL, log, 20000), 0);
	FILE *f = fopen(log, "r");
	assert_non_null(f);
	char line[512];
	unsigned long long req = 0;
	const char *at = NULL;
	if (fgets(line, sizeof(line), f))
		at = strstr(line, "requests=");
	fclose(f);
	assert_non_null(at);
	assert_int_equal(sscanf(at, "requests=%llu", &req), 1);
	return req;
}

int integ_role_pid(const struct integ *e, const char *role)
{
	char pidf[700];
	int pid = 0;
	unsigned long long start = 0;
	snprintf(pidf, sizeof(pidf), "%s/pids/%s.pid", e->data, role);
	FILE *f = fopen(pidf, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%d %llu", &pid, &start), 2);
	fclose(f);
	return pid;
}

int integ_wait_visible(const char *path, int timeout_ms)
{
	struct stat st;
	for (int waited = 0;; waited += 20) {
		if (stat(path, &st) == 0)
			return 1;
		if (waited >= timeout_ms)
			return 0;
		clock_sleep_ms(20);
	}
}

int integ_pid_alive(int pid) { return procstat_running(pid); }

int integ_kill9(const struct integ *e, const char *role)
{
	int pid = integ_role_pid(e, role);
	assert_int_equal(kill(pid, SIGKILL), 0);
	for (int i = 0; i < 1000 && integ_pid_alive(pid); i++)
		clock_sleep_ms(10);
	assert_false(integ_pid_alive(pid));
	return pid;
}

int integ_all_serving(const struct integ *e)
{
	char port[32], id[128], mg[64], secret[700], log[700], out[8192];
	integ_conf_get(e, "mgmtd_port", port, sizeof(port));
	integ_conf_get(e, "cluster_id", id, sizeof(id));
	snprintf(mg, sizeof(mg), "127.0.0.1:%s", port);
	snprintf(secret, sizeof(secret), "%s/secret", e->data);
	snprintf(log, sizeof(log), "%s/chains.out", e->dir);
	unlink(log);
	char *argv[] = {
	    (char *)testenv_chainfs(), "admin", "list-chains", "--mgmtd", mg, "--cluster-id", id,
	    "--secret-file",           secret,  NULL};
	if (integ_run(argv, NULL, log, 30000) != 0)
		return 0;
	if (testenv_read_file(log, out, sizeof(out)) < 0)
		return 0;
	return strstr(out, "(serving)") && !strstr(out, "(offline)") && !strstr(out, "(syncing)") &&
	       !strstr(out, "(waiting)") && !strstr(out, "(lastsrv)");
}

int integ_up_again(const struct integ *e, const char *tag)
{
	char log[700];
	snprintf(log, sizeof(log), "%s/%s.out", e->dir, tag);
	char *up[] = {(char *)testenv_chainfs(), "up", "--dir", (char *)e->data, NULL};
	return integ_run(up, NULL, log, 120000);
}

static int all_serving(void *e) { return integ_all_serving(e); }

int integ_wait_serving(const struct integ *e, int ms)
{
	return testenv_wait(all_serving, (void *)e, ms);
}

void integ_up_serving(const struct integ *e, const char *tag, int serving_ms)
{
	assert_int_equal(integ_up_again(e, tag), 0);
	assert_true(integ_wait_serving(e, serving_ms));
}

int integ_run(char *const argv[], const char *cwd, const char *log, int timeout_ms)
{
	return testenv_run(argv, cwd, log, timeout_ms);
}

void integ_print_file(const char *path)
{
	char buf[4096];
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fclose(f);
}

void integ_teardown(struct integ *e)
{
	if (e && e->up) {
		char *argv[] = {(char *)testenv_chainfs(), "down", "--dir", e->data, NULL};
		integ_run(argv, NULL, NULL, 60000);
		e->up = 0;
	}
}

static void down_at_exit(void)
{
	integ_teardown(live);
}

void integ_up(struct integ *e)
{
	static int hooked;
	char log[600];
	snprintf(log, sizeof(log), "%s/up.out", e->dir);
	char *argv[] = {(char *)testenv_chainfs(),
	                "up",
	                "--dir",
	                e->data,
	                "--mount",
	                e->mnt,
	                "--timeout-ms",
	                "60000",
	                NULL};
	if (!hooked) {
		atexit(down_at_exit);
		hooked = 1;
	}
	live = e;
	e->up = 1;
	int rc = integ_run(argv, NULL, log, 180000);
	if (rc != 0)
		integ_print_file(log);
	assert_int_equal(rc, 0);
	struct stat st;
	assert_int_equal(stat(e->mnt, &st), 0);
	assert_int_equal((int)st.st_ino, 1);
}

struct proc {
	int pid;
	unsigned long long start;
	char role[300];
};

static int proc_alive(const struct proc *p) { return procstat_running_since(p->pid, p->start); }

static size_t read_pids(const struct integ *e, struct proc *ps, size_t cap)
{
	char dir[600], path[900];
	size_t n = 0;
	snprintf(dir, sizeof(dir), "%s/pids", e->data);
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	for (struct dirent *de; (de = readdir(d)) && n < cap;) {
		if (!strstr(de->d_name, ".pid"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fscanf(f, "%d %llu", &ps[n].pid, &ps[n].start) == 2) {
			snprintf(ps[n].role, sizeof(ps[n].role), "%s", de->d_name);
			n++;
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

void integ_down(struct integ *e)
{
	struct proc ps[INTEG_MAX_PROCS];
	char log[600];
	size_t n = read_pids(e, ps, INTEG_MAX_PROCS);
	/* mgmtd, meta, 3 storage services and the mount. */
	assert_true(n >= 3);
	snprintf(log, sizeof(log), "%s/down.out", e->dir);
	char *argv[] = {(char *)testenv_chainfs(), "down", "--dir", e->data, NULL};
	int rc = integ_run(argv, NULL, log, 120000);
	if (rc != 0)
		integ_print_file(log);
	assert_int_equal(rc, 0);
	e->up = 0;
	/* Every role stopped on SIGTERM, none needed SIGKILL. */
	char out[8192] = {0};
	FILE *df = fopen(log, "r");
	assert_non_null(df);
	size_t got = fread(out, 1, sizeof(out) - 1, df);
	fclose(df);
	out[got] = 0;
	if (strstr(out, "SIGKILL"))
		fprintf(stderr, "%s", out);
	assert_null(strstr(out, "SIGKILL"));
	for (size_t i = 0; i < n; i++) {
		if (proc_alive(&ps[i]))
			fprintf(stderr, "still alive after down: %s pid %d\n", ps[i].role,
			        ps[i].pid);
		assert_false(proc_alive(&ps[i]));
	}
	/* Every role stopped cleanly: no sanitizer report in any log. */
	char logs[600];
	snprintf(logs, sizeof(logs), "%s/logs", e->data);
	DIR *d = opendir(logs);
	assert_non_null(d);
	for (struct dirent *de; (de = readdir(d));) {
		char path[900];
		if (!strstr(de->d_name, ".log"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", logs, de->d_name);
		int bad = testenv_file_has(path, "Sanitizer") || testenv_file_has(path, "runtime error:");
		if (bad) {
			fprintf(stderr, "sanitizer report in %s:\n", path);
			integ_print_file(path);
		}
		assert_false(bad);
	}
	closedir(d);
	struct stat a, b;
	char parent[600];
	snprintf(parent, sizeof(parent), "%s/..", e->mnt);
	assert_int_equal(stat(e->mnt, &a), 0);
	assert_int_equal(stat(parent, &b), 0);
	assert_int_equal(a.st_dev, b.st_dev); /* no longer a mount point */
}

void integ_write_file(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(close(fd), 0);
}

int64_t integ_file_crc(const char *path)
{
	char buf[1 << 16];
	uint32_t crc = 0;
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0) {
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		crc = crc32c(crc, buf, (size_t)n);
	}
	close(fd);
	return crc;
}

/* ---- integ_main: one cluster per test program ---- */

static struct integ *group_env;
static const char *group_tag;

static int group_setup(void **state)
{
	(void)state;
	integ_init(group_env, group_tag);
	integ_up(group_env);
	return 0;
}

/* A test, not the group teardown: cmocka does not count teardown
 * failures in its exit status, and down's checks must count. */
static void group_down(void **state)
{
	(void)state;
	integ_down(group_env);
}

static int group_teardown(void **state)
{
	(void)state;
	integ_teardown(group_env);
	return 0;
}

/* ctest kills a test at its TIMEOUT (600 s for integ) with SIGKILL, which
 * runs no atexit hook and so would leave the cluster running and mounted.
 * Shortly before that, give up ourselves: exit() runs down_at_exit. */
#define INTEG_HARD_TIMEOUT_S 570

static void hard_timeout(int sig)
{
	(void)sig;
	static const char msg[] = "integ: hard timeout, bringing the cluster down\n";
	ssize_t w = write(2, msg, sizeof(msg) - 1);
	(void)w;
	exit(1);
}

int integ_main(struct integ *e, const char *tag, const struct CMUnitTest *tests, size_t n)
{
	integ_require_fuse();
	signal(SIGALRM, hard_timeout);
	alarm(INTEG_HARD_TIMEOUT_S);
	group_env = e;
	group_tag = tag;
	struct CMUnitTest *all = calloc(n + 1, sizeof(*all));
	if (!all)
		return 1;
	memcpy(all, tests, n * sizeof(*all));
	all[n] = (struct CMUnitTest)cmocka_unit_test(group_down);
	int rc = _cmocka_run_group_tests(tag, all, n + 1, group_setup, group_teardown);
	free(all);
	return rc;
}

static int mounted(const char *mnt)
{
	struct stat a, b;
	char parent[700];
	snprintf(parent, sizeof(parent), "%s/..", mnt);
	return stat(mnt, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

pid_t integ_mount2_start(const struct integ *e, char *mnt, size_t cap)
{
	return integ_mount2_start_args(e, mnt, cap, NULL);
}

pid_t integ_mount2_start_args(const struct integ *e, char *mnt, size_t cap, const char *extra)
{
	char port[32], addr[64], cid[128], secret[700], log[700];
	integ_conf_get(e, "mgmtd_port", port, sizeof(port));
	integ_conf_get(e, "cluster_id", cid, sizeof(cid));
	snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
	snprintf(secret, sizeof(secret), "%s/secret", e->data);
	snprintf(mnt, cap, "%s/mnt2", e->dir);
	snprintf(log, sizeof(log), "%s/mount2.log", e->dir);
	assert_true(mkdir(mnt, 0755) == 0 || errno == EEXIST);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (extra)
			execl(testenv_chainfs(), "chainfs", "mount", "--mgmtd", addr, "--cluster-id",
			      cid, "--secret-file", secret, extra, mnt, (char *)NULL);
		else
			execl(testenv_chainfs(), "chainfs", "mount", "--mgmtd", addr, "--cluster-id",
			      cid, "--secret-file", secret, mnt, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1500 && !mounted(mnt); i++)
		clock_sleep_ms(20);
	assert_true(mounted(mnt));
	return pid;
}

void integ_mount2_stop(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	int st = 0;
	for (int i = 0; i < 500; i++) {
		if (waitpid(*pid, &st, WNOHANG) == *pid) {
			*pid = 0;
			return;
		}
		clock_sleep_ms(20);
	}
	kill(*pid, SIGKILL);
	waitpid(*pid, &st, 0);
	*pid = 0;
}

int integ_drop_dentries(void)
{
	sync();
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0)
		return 0;
	int ok = write(fd, "2\n", 2) == 2;
	close(fd);
	return ok;
}

unsigned long long integ_cache_drops(void)
{
	char line[128];
	unsigned long long n = 0;
	FILE *f = fopen("/proc/vmstat", "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "drop_slab %llu", &n) == 1)
			break;
	fclose(f);
	return n;
}

int integ_flip_copy(const struct integ *e, int storage, const char *marker)
{
	char dir[700];
	snprintf(dir, sizeof(dir), "%s/storage%d", e->data, storage);
	int r = testenv_flip_marker(dir, marker);
	assert_true(r >= 0);
	return r;
}

int integ_flip_marker(const struct integ *e, const char *marker, int copies)
{
	int done = 0;
	for (int s = 1; s <= 3 && done < copies; s++)
		done += integ_flip_copy(e, s, marker);
	return done;
}

void integ_touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(close(fd), 0);
}

int integ_count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

long long integ_fsck_sessions(const struct integ *e)
{
	char log[700], line[1024];
	long long n = -1;
	snprintf(log, sizeof(log), "%s/fsck-sessions.out", e->dir);
	unlink(log);
	char *argv[] = {(char *)testenv_chainfs(), "fsck", "--dir", (char *)e->data, NULL};
	integ_run(argv, NULL, log, 120000);
	FILE *f = fopen(log, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, " sessions=");
		if (!strncmp(line, "meta inodes=", 12) && p)
			n = strtoll(p + 10, NULL, 10);
	}
	fclose(f);
	return n;
}
