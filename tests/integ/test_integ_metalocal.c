/* test_integ_metalocal.c - the mount running meta operations in its own
 * process on meta's LMDB store (`chainfs up --meta-local`, meta_local.h;
 * README "Durability of metadata").
 *
 * - Round trip: the mount says it runs meta in-process; creates, inline
 *   writes and reads, rename, link, symlink, readdir, xattrs and the usual
 *   errors (EEXIST, ENOENT, ENOTEMPTY) work; with the meta service stopped
 *   (SIGSTOP) a mkdir, stat, symlink, readlink and rmdir still complete
 *   (they never leave the mount), which they cannot over RPC.
 * - kill -9 of meta: what the mount acknowledged before is there after the
 *   restart, and so is what it did while meta was dead.
 * - Two mounts: a second mount over RPC (no --meta-local) sees the first's
 *   changes, and the first sees the second's, within the name bound.
 * - kill -9 of the mount while it holds LMDB's writer lock, in the middle
 *   of a create storm (CFS_TEST_LMDB_KILL_IN_WRITE kills it inside a write
 *   txn): the meta service still commits (a second mount over RPC creates),
 *   a new mount comes up, every create acknowledged before the kill is
 *   there, and `chainfs fsck` finds the namespace clean.
 * - GC kick: with meta's background pass made 30 s long
 *   (CFS_TEST_META_BG_MS), the space of a closed file the mount unlinks
 *   in-process comes back (df) within GC_BOUND_MS: the mount's GC_KICK
 *   woke meta's GC (meta_client.c "GC kicks"). Without the kick it waited
 *   for the next pass, 30 s. And 2000 unlinks in a row send meta at most
 *   KICKS_MAX requests: meta answers a kick when its GC pass starts, so
 *   the mount kicks about once per pass, not once per unlink (which
 *   halved the mount's delete rate).
 * - File calls in the mount: open without truncate, close with the known
 *   length, chmod and utimens (setattr without a size), the length
 *   report of a chunked file and an inline file's conversion run
 *   in-process: NFOPS rounds of them send meta at most NFOPS / 4
 *   requests (over RPC: at least 5 per round). A second mount over RPC
 *   sees the mode and mtime change within its attribute timeout; after
 *   kill -9 of the mount right after the last close and setattr
 *   returned, the new mount and the one over RPC see the last mode,
 *   mtime and length; the write session a file still held open at the
 *   kill had recorded in-process is pruned by meta (fsck: none left).
 *
 * - A namespace change that waits does not hold the mount up: a process
 *   holds LMDB's writer lock (a write txn of its own on meta's store)
 *   while an unlink runs in the mount, which must wait for it; a stat
 *   and a readdir elsewhere in the mount still complete at once, and the
 *   unlink completes once the holder lets go. UNLINK is answered by the
 *   thread that read it (fuse_loop.c fl_fast with an in-process meta);
 *   without the block hint in kv_lmdb.c that thread waited in LMDB while
 *   holding the reading of /dev/fuse, and every request of the mount
 *   waited with it.
 * - The same for WRITE, which the reading thread serves when it is an
 *   inline write (fuse_loop.c fl_fast): an inline write behind that
 *   lock, and a write to a chunked file with the storage services
 *   stopped (SIGSTOP), each leave a stat and a readdir free to complete;
 *   both writes complete once let go. Without the hand-over before a
 *   chunk write (op_write's, and write_range's block hint) the chunk
 *   write held every request of the mount until storage ran.
 *
 * - Compaction hand-off: 20,000 creates and unlinks leave meta's store a
 *   free list worth compacting; while another thread keeps creating
 *   files through the mount, meta asks for the store (compact.want), the
 *   mount releases it (calls over RPC meanwhile), meta compacts online and
 *   the mount opens the store again; no create fails, every acknowledged
 *   one is there after, and creates went on while the store was
 *   released. Without the hand-off meta skips the compaction for as long
 *   as the mount runs.
 * - No store: `chainfs mount --meta-local` on a path without a meta store
 *   (a typo whose parent exists) refuses with a clear error and creates
 *   nothing there.
 *
 * `chainfs up` starts the mount with --meta-local by default, restarts
 * included; the group sets CFS_FUSE_NS_FAST=1 before any thread, so the
 * namespace changes run on the reading thread (fuse_loop.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/clock.h"
#include "integ_env.h"
#include "lmdb_holder.h"
#include "testenv.h"

#define NAME_BOUND_MS 100   /* the mount's --dircache-poll-ms */
#define SLACK_MS      2000  /* polls, a round trip, a loaded CI host */
#define SLOW_BG_MS    "30000" /* meta's background pass in test_gc_kick */
#define GC_BOUND_MS   8000  /* kick + GC + meta's 1 s statfs cache, loaded host */
#define NDEL          2000
#define KICKS_MAX     (NDEL / 10) /* one per 50 ms GC pass: ~10 at 10k unlinks/s */
#define NFOPS         300
#define ATTR_BOUND_MS 1000  /* the mount's --attr-timeout */
#define PRUNE_MS      60000 /* mgmtd's heartbeat timeout (10 s) + meta's session check, loaded */
#define NBULK         20000 /* creates and unlinks that make compaction worth it */
#define COMPACT_BOUND_MS 20000 /* settle (100 ms checks), ask, release, copy: loaded host */

static struct integ env;

/* integ_up_again, with its output on failure. */
static int up_again(const char *tag)
{
	char log[700], out[8192];
	int rc = integ_up_again(&env, tag);
	snprintf(log, sizeof(log), "%s/%s.out", env.dir, tag);
	if (rc && testenv_read_file(log, out, sizeof(out)) >= 0)
		print_message("up %s: rc=%d\n%s\n", tag, rc, out);
	return rc;
}

/* Waits up to MS for stat(PATH) to succeed (WANT 1) or fail ENOENT (0). */
static int wait_exists(const char *path, int want, int ms)
{
	uint64_t until = clock_mono_ms() + (uint64_t)ms;
	for (;;) {
		struct stat st;
		int rc = stat(path, &st);
		if ((want && rc == 0) || (!want && rc < 0 && errno == ENOENT))
			return 1;
		if (clock_mono_ms() > until)
			return 0;
		clock_sleep_ms(20);
	}
}

/* Namespace calls that stay in the mount; exit status 0 when all worked. */
static int local_only_ops(const char *dir)
{
	char p[1200], q[1200], link[64];
	struct stat st;
	snprintf(p, sizeof(p), "%s/while-stopped", dir);
	snprintf(q, sizeof(q), "%s/sym-stopped", dir);
	if (mkdir(p, 0755) || stat(p, &st) || !S_ISDIR(st.st_mode))
		return 1;
	if (symlink("target", q) || readlink(q, link, sizeof(link)) != 6)
		return 2;
	if (unlink(q) || rmdir(p))
		return 3;
	return 0;
}

static void test_roundtrip(void **state)
{
	char log[700], dir[1024], p[1200], q[1200], buf[64];
	snprintf(log, sizeof(log), "%s/logs/mount.log", env.data);
	assert_true(testenv_file_has(log, "meta in-process on lmdb://"));
	assert_true(testenv_file_has(log, "namespace changes on the reading thread: always"));

	integ_path(&env, "rt", dir, sizeof(dir));
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(mkdir(dir, 0755), -1);
	assert_int_equal(errno, EEXIST);
	snprintf(p, sizeof(p), "%s/small", dir);
	integ_write_file(p, "hello, in-process meta", 22);
	int fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 22);
	close(fd);
	assert_memory_equal(buf, "hello, in-process meta", 22);
	snprintf(q, sizeof(q), "%s/small2", dir);
	assert_int_equal(rename(p, q), 0);
	assert_int_equal(link(q, p), 0);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(setxattr(p, "user.k", "v1", 2, 0), 0);
	assert_int_equal(getxattr(q, "user.k", buf, sizeof(buf)), 2);
	snprintf(q, sizeof(q), "%s/sym", dir);
	assert_int_equal(symlink("small", q), 0);
	assert_int_equal(readlink(q, buf, sizeof(buf)), 5);
	for (int i = 0; i < 50; i++) {
		snprintf(q, sizeof(q), "%s/f%02d", dir, i);
		integ_touch(q);
	}
	assert_int_equal(integ_count_entries(dir), 53);
	assert_int_equal(rmdir(dir), -1);
	assert_int_equal(errno, ENOTEMPTY);
	snprintf(q, sizeof(q), "%s/missing", dir);
	assert_int_equal(unlink(q), -1);
	assert_int_equal(errno, ENOENT);

	/* Meta stopped: the calls that stay in the mount still complete. */
	int meta = integ_role_pid(&env, "meta");
	assert_int_equal(testenv_stop(meta), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0)
		_exit(local_only_ops(dir));
	int st_child = -1, done = 0;
	for (int i = 0; i < 750 && !done; i++) {
		done = waitpid(child, &st_child, WNOHANG) == child;
		if (!done)
			clock_sleep_ms(20);
	}
	kill(meta, SIGCONT);
	if (!done) {
		kill(child, SIGKILL);
		waitpid(child, &st_child, 0);
	}
	assert_true(done);
	assert_true(WIFEXITED(st_child));
	assert_int_equal(WEXITSTATUS(st_child), 0);
}

/* Creates acknowledged before kill -9 of meta, and mkdirs done while it
 * was dead, are all there after the restart. */
static void test_kill9_meta(void **state)
{
	char dir[1024], p[1200];
	integ_path(&env, "k9meta", dir, sizeof(dir));
	assert_int_equal(mkdir(dir, 0755), 0);
	for (int i = 0; i < 20; i++) {
		snprintf(p, sizeof(p), "%s/f%02d", dir, i);
		integ_touch(p);
	}
	integ_kill9(&env, "meta");
	for (int i = 0; i < 10; i++) {
		snprintf(p, sizeof(p), "%s/d%02d", dir, i);
		assert_int_equal(mkdir(p, 0755), 0);
	}
	assert_int_equal(up_again("up-meta"), 0);
	assert_int_equal(integ_count_entries(dir), 30);
	snprintf(p, sizeof(p), "%s/after", dir);
	integ_touch(p);
	assert_int_equal(integ_count_entries(dir), 31);
}

/* A second mount over RPC and the in-process one see each other's name
 * changes within the bound, names cached on both sides first. */
static void test_two_mounts(void **state)
{
	char mnt2[600], d1[1024], d2[1200], a1[1300], b1[1300], a2[1300], b2[1300];
	pid_t m2 = integ_mount2_start(&env, mnt2, sizeof(mnt2));
	integ_path(&env, "two", d1, sizeof(d1));
	snprintf(d2, sizeof(d2), "%s/two", mnt2);
	assert_int_equal(mkdir(d1, 0755), 0);
	snprintf(a1, sizeof(a1), "%s/a", d1);
	snprintf(b1, sizeof(b1), "%s/b", d1);
	snprintf(a2, sizeof(a2), "%s/a", d2);
	snprintf(b2, sizeof(b2), "%s/b", d2);
	assert_true(wait_exists(d2, 1, SLACK_MS));
	/* both mounts cache "a" absent, then mount 1 creates it */
	assert_true(wait_exists(a1, 0, 10) && wait_exists(a2, 0, 10));
	integ_touch(a1);
	assert_true(wait_exists(a2, 1, NAME_BOUND_MS + SLACK_MS));
	/* both cache "a" present, then mount 2 renames it */
	assert_true(wait_exists(a1, 1, 10));
	assert_int_equal(rename(a2, b2), 0);
	assert_true(wait_exists(a1, 0, NAME_BOUND_MS + SLACK_MS));
	assert_true(wait_exists(b1, 1, NAME_BOUND_MS + SLACK_MS));
	/* mount 1 unlinks what mount 2 holds */
	assert_true(wait_exists(b2, 1, 10));
	assert_int_equal(unlink(b1), 0);
	assert_true(wait_exists(b2, 0, NAME_BOUND_MS + SLACK_MS));
	integ_mount2_stop(&m2);
}

static int run_fsck(void)
{
	char log[700];
	snprintf(log, sizeof(log), "%s/fsck-metalocal.out", env.dir);
	unlink(log);
	char *argv[] = {(char *)testenv_chainfs(), "fsck", "--dir", env.data, NULL};
	int rc = integ_run(argv, NULL, log, 120000);
	char out[8192];
	if (rc && testenv_read_file(log, out, sizeof(out)) >= 0)
		print_message("fsck: rc=%d\n%s\n", rc, out);
	return rc;
}

/* Creates files in DIR until one fails; writes the index of each create
 * that returned to FD (the acknowledged ones). The mount kills itself
 * after a few dozen creates: STORM_MAX bounds a run where it does not,
 * so that such a run fails in seconds, not at the suite's timeout. */
#define STORM_MAX 5000
static int storm(const char *dir, int fd)
{
	char p[1200];
	for (int i = 0; i < STORM_MAX; i++) {
		snprintf(p, sizeof(p), "%s/s%05d", dir, i);
		int f = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (f < 0)
			return 0;
		close(f);
		if (write(fd, &i, sizeof(i)) != (ssize_t)sizeof(i))
			return 1;
	}
	return 2; /* the mount never died */
}

static void test_kill9_mount_in_write(void **state)
{
	char dir[1024], p[1200], mnt2[600], d2[1200];
	integ_path(&env, "storm", dir, sizeof(dir));
	assert_int_equal(mkdir(dir, 0755), 0);
	/* A mount that kills itself inside its 40th LMDB write txn. */
	integ_kill9(&env, "mount");
	assert_int_equal(setenv("CFS_TEST_LMDB_KILL_IN_WRITE", "40", 1), 0);
	int rc = up_again("up-killer");
	unsetenv("CFS_TEST_LMDB_KILL_IN_WRITE");
	assert_int_equal(rc, 0);
	int mount = integ_role_pid(&env, "mount");

	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(pfd[0]);
		_exit(storm(dir, pfd[1]));
	}
	close(pfd[1]);
	int idx, acked = 0, last = -1;
	struct pollfd pw = {.fd = pfd[0], .events = POLLIN};
	/* A create that never returns (the dead mount's connection not
	 * aborted: a CI run once sat here until the suite's timeout) fails
	 * the test after 60 s with what the processes were doing. */
	int quiet = 0;
	for (;;) {
		if (poll(&pw, 1, 60000) != 1) {
			quiet = 1;
			break;
		}
		if (read(pfd[0], &idx, sizeof(idx)) != (ssize_t)sizeof(idx))
			break;
		assert_int_equal(idx, last + 1);
		last = idx;
		acked++;
	}
	close(pfd[0]);
	int st;
	if (quiet) {
		char path[64], buf[4096];
		print_message("storm: no answer for 60 s after %d creates; mount %s\n", acked,
		              integ_pid_alive(mount) ? "alive" : "gone");
		const int pids[] = {child, mount};
		for (int k = 0; k < 2; k++) {
			snprintf(path, sizeof(path), "/proc/%d/stack", pids[k]);
			if (testenv_read_file(path, buf, sizeof(buf)) >= 0)
				print_message("%s %d stack:\n%s\n", k ? "mount" : "storm", pids[k],
				              buf);
		}
		kill(child, SIGKILL);
	}
	assert_int_equal(waitpid(child, &st, 0), child);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0); /* stopped by the dead mount */
	for (int i = 0; i < 500 && integ_pid_alive(mount); i++)
		clock_sleep_ms(20);
	assert_false(integ_pid_alive(mount));
	print_message("storm: %d creates acknowledged before the mount died\n", acked);
	assert_true(acked > 0);

	/* The meta service takes the writer lock the dead mount held. */
	pid_t m2 = integ_mount2_start(&env, mnt2, sizeof(mnt2));
	snprintf(d2, sizeof(d2), "%s/storm/over-rpc", mnt2);
	integ_touch(d2);
	integ_mount2_stop(&m2);

	/* A new in-process mount: every acknowledged create is there. */
	assert_int_equal(up_again("up-after-storm"), 0);
	for (int i = 0; i < acked; i++) {
		struct stat sb;
		snprintf(p, sizeof(p), "%s/s%05d", dir, i);
		assert_int_equal(stat(p, &sb), 0);
	}
	snprintf(p, sizeof(p), "%s/over-rpc", dir);
	struct stat sb;
	assert_int_equal(stat(p, &sb), 0);
	snprintf(p, sizeof(p), "%s/after", dir);
	integ_touch(p);
	assert_int_equal(run_fsck(), 0);
}

/* Bytes the storage targets use, as df shows them (meta caches 1 s). */
static uint64_t df_used(void)
{
	struct statvfs sv;
	assert_int_equal(statvfs(env.mnt, &sv), 0);
	assert_true(sv.f_blocks >= sv.f_bfree);
	return (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
}

/* Waits up to MS for df's used bytes to reach WANT (ABOVE 1) or drop
 * below it (0); returns the last figure. */
static uint64_t wait_used(uint64_t want, int above, int ms)
{
	uint64_t until = clock_mono_ms() + (uint64_t)ms, used;
	for (;;) {
		used = df_used();
		if ((above && used >= want) || (!above && used < want) || clock_mono_ms() > until)
			return used;
		clock_sleep_ms(50);
	}
}

static void test_gc_kick(void **state)
{
	static char data[8u << 20];
	char p[1200];
	/* meta again, with a background pass too long to be what frees it */
	integ_kill9(&env, "meta");
	assert_int_equal(setenv("CFS_TEST_META_BG_MS", SLOW_BG_MS, 1), 0);
	int rc = up_again("up-slow-bg");
	unsetenv("CFS_TEST_META_BG_MS");
	assert_int_equal(rc, 0);

	integ_path(&env, "gc-kick", p, sizeof(p));
	memset(data, 0x5a, sizeof(data));
	uint64_t before = df_used();
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(close(fd), 0);
	uint64_t full = wait_used(before + sizeof(data), 1, 5000);
	assert_true(full >= before + sizeof(data));

	uint64_t t0 = clock_mono_ms();
	assert_int_equal(unlink(p), 0);
	uint64_t gone = wait_used(full, 0, 2 * GC_BOUND_MS);
	uint64_t ms = clock_mono_ms() - t0;
	print_message("df used: before=%llu written=%llu after unlink=%llu in %llu ms\n",
		      (unsigned long long)before, (unsigned long long)full,
		      (unsigned long long)gone, (unsigned long long)ms);
	assert_true(gone < full);
	assert_true(ms <= GC_BOUND_MS);

	integ_path(&env, "gc-kicks", p, sizeof(p));
	assert_int_equal(mkdir(p, 0755), 0);
	char f[1300];
	for (int i = 0; i < NDEL; i++) {
		snprintf(f, sizeof(f), "%s/f%04d", p, i);
		integ_touch(f);
	}
	unsigned long long before_req = integ_meta_requests(&env);
	t0 = clock_mono_ms();
	for (int i = 0; i < NDEL; i++) {
		snprintf(f, sizeof(f), "%s/f%04d", p, i);
		assert_int_equal(unlink(f), 0);
	}
	ms = clock_mono_ms() - t0;
	/* the 1 is integ_meta_requests' own call */
	unsigned long long sent = integ_meta_requests(&env) - before_req - 1;
	print_message("%d unlinks in %llu ms: %llu meta requests\n", NDEL,
		      (unsigned long long)ms, sent);
	assert_true(sent <= KICKS_MAX);

	/* meta as before, for what follows */
	integ_kill9(&env, "meta");
	assert_int_equal(up_again("up-meta-again"), 0);
}

/* Waits up to MS for child PID; 1 with its status in *ST once it ended. */
static int wait_child(pid_t pid, int ms, int *st)
{
	for (int i = 0; i <= ms / 10; i++) {
		if (waitpid(pid, st, WNOHANG) == pid)
			return 1;
		clock_sleep_ms(10);
	}
	return 0;
}

/* stat of a name never looked up and a readdir, in DIR; 0 when both worked. */
static int other_requests(const char *dir)
{
	char p[1200];
	struct stat st;
	snprintf(p, sizeof(p), "%s/never-looked-up", dir);
	if (stat(p, &st) == 0 || errno != ENOENT)
		return 1;
	snprintf(p, sizeof(p), "%s/present", dir);
	if (stat(p, &st))
		return 2;
	return integ_count_entries(dir) == 1 ? 0 : 3;
}

/* Let-go actions for check_waiter: the LMDB writer lock's holder, or the
 * stopped storage services. */
static void let_go_holder(void *arg)
{
	int *release = arg;
	assert_int_equal(write(*release, "g", 1), 1);
	close(*release);
}

static void let_go_storage(void *arg)
{
	const int *sp = arg;
	for (int i = 0; i < 3; i++)
		assert_int_equal(kill(sp[i], SIGCONT), 0);
}

/* CHILD runs a request that waits until LET_GO(ARG): it must still be
 * waiting after 300 ms, while a stat and a readdir in DIR complete within
 * 3 s (the mount's reading went on); after LET_GO it exits 0 within
 * DONE_MS. */
static void check_waiter(pid_t child, const char *dir, void (*let_go)(void *), void *arg,
                         int done_ms)
{
	int st = -1, cst = -1;
	assert_true(child > 0);
	clock_sleep_ms(300); /* the request is in the mount, waiting */
	pid_t other = fork();
	assert_true(other >= 0);
	if (other == 0)
		_exit(other_requests(dir));
	int other_done = wait_child(other, 3000, &st);
	int early = waitpid(child, &cst, WNOHANG) == child;
	let_go(arg); /* either way, so that nothing hangs */
	if (!other_done) {
		kill(other, SIGKILL);
		waitpid(other, &st, 0);
	}
	int done = early || wait_child(child, done_ms, &cst);
	assert_false(early);     /* it did wait */
	assert_true(other_done); /* ... without holding the mount up */
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_true(done);
	assert_true(WIFEXITED(cst) && WEXITSTATUS(cst) == 0);
}

/* OP(PATH) in a child while another process holds LMDB's writer lock on
 * STORE: check_waiter with DIR, the holder letting go. */
static void check_behind_writer(const char *store, const char *dir, int (*op)(const char *),
                                const char *path)
{
	int release = -1, hst = -1;
	pid_t holder = lmdb_hold_writer(store, 20000, &release);
	assert_true(holder > 0);
	pid_t child = fork();
	if (child == 0)
		_exit(op(path));
	check_waiter(child, dir, let_go_holder, &release, 10000);
	waitpid(holder, &hst, 0);
	assert_true(WIFEXITED(hst) && WEXITSTATUS(hst) == 0);
}

static int unlink_op(const char *path)
{
	return unlink(path) ? 1 : 0;
}

/* The waiting tests' setup: STORE (700) is meta's store, D1 and D2 (1024)
 * new directories TAG1 and TAG2, F1 (1200) the empty file D1/NAME, and
 * D2 holds "present" (other_requests). */
static void wait_setup(const char *tag, char *store, char *d1, char *d2, char *f1,
                       const char *name)
{
	char t[64], p[1200];
	snprintf(store, 700, "%s/meta", env.data);
	snprintf(t, sizeof(t), "%s1", tag);
	integ_path(&env, t, d1, 1024);
	snprintf(t, sizeof(t), "%s2", tag);
	integ_path(&env, t, d2, 1024);
	assert_int_equal(mkdir(d1, 0755), 0);
	assert_int_equal(mkdir(d2, 0755), 0);
	snprintf(f1, 1200, "%s/%s", d1, name);
	integ_touch(f1);
	snprintf(p, sizeof(p), "%s/present", d2);
	integ_touch(p);
}

static void test_wait_hands_over(void **state)
{
	char store[700], d1[1024], d2[1024], victim[1200];
	wait_setup("wait", store, d1, d2, victim, "victim");

	/* The unlink in its own process: it waits for the holder. (Another
	 * directory for the rest: the kernel holds d1's lock meanwhile.) */
	check_behind_writer(store, d2, unlink_op, victim);
	assert_true(wait_exists(victim, 0, 10));
}

/* Child: pwrite N bytes of BYTE at OFF into PATH; 0 when all went. */
static int child_write(const char *path, size_t n, off_t off, int byte)
{
	char *b = malloc(n);
	int fd = open(path, O_WRONLY);
	if (!b || fd < 0)
		return 1;
	memset(b, byte, n);
	int rc = pwrite(fd, b, n, off) == (ssize_t)n ? 0 : 2;
	free(b);
	return close(fd) || rc ? 3 : 0;
}

static int write_small_op(const char *path)
{
	return child_write(path, 16384, 0, 's');
}

/* Whether PATH holds N bytes, each BYTE. */
static int all_bytes(const char *path, size_t n, int byte)
{
	char *b = malloc(n + 1);
	int fd = open(path, O_RDONLY);
	ssize_t got = fd >= 0 && b ? read(fd, b, n + 1) : -1;
	int ok = got == (ssize_t)n;
	for (size_t i = 0; ok && i < n; i++)
		ok = b[i] == (char)byte;
	if (fd >= 0)
		close(fd);
	free(b);
	return ok;
}

/* A write that waits must not hold the mount up either: WRITE is read
 * and served by one thread when it is an inline write (fuse_loop.c
 * fl_fast), so (a) an inline write waiting for LMDB's writer lock hands
 * the reading over through the block hint, and (b) a write to a chunked
 * file, which waits on storage (stopped here), hands it over before it
 * starts (fuse_fs.c op_write). Meanwhile a stat and a readdir elsewhere
 * complete at once; both writes complete once let go. Without the
 * hand-over before a chunk write (op_write's and write_range's block
 * hint) (b) holds every request of the mount until storage runs. */
static void test_write_hands_over(void **state)
{
	char store[700], d1[1024], d2[1024], small[1200], big[1200];
	wait_setup("wwait", store, d1, d2, small, "small");
	snprintf(big, sizeof(big), "%s/big", d1);
	size_t bign = 256 * 1024; /* past the 64 KiB inline threshold: chunks */
	char *b = malloc(bign);
	assert_non_null(b);
	memset(b, 'a', bign);
	integ_write_file(big, b, bign);
	free(b);

	/* (a) inline write behind LMDB's writer lock */
	check_behind_writer(store, d2, write_small_op, small);
	assert_true(all_bytes(small, 16384, 's'));

	/* (b) chunk write with every storage service stopped */
	int sp[3];
	for (int i = 0; i < 3; i++) {
		char role[16];
		snprintf(role, sizeof(role), "storage%d", i + 1);
		sp[i] = integ_role_pid(&env, role);
		assert_int_equal(testenv_stop(sp[i]), 0);
	}
	pid_t w = fork();
	if (w == 0)
		_exit(child_write(big, bign, 0, 'b'));
	check_waiter(w, d2, let_go_storage, sp, 30000);
	assert_true(all_bytes(big, bign, 'b'));
}

/* Waits up to MS for PATH's mode (permission bits) and mtime seconds to
 * be MODE and MTIME. */
static int wait_attrs(const char *path, mode_t mode, time_t mtime, int ms)
{
	uint64_t until = clock_mono_ms() + (uint64_t)ms;
	for (;;) {
		struct stat st;
		if (stat(path, &st) == 0 && (st.st_mode & 07777) == mode && st.st_mtime == mtime)
			return 1;
		if (clock_mono_ms() > until)
			return 0;
		clock_sleep_ms(20);
	}
}

static void expect_file(const char *path, mode_t mode, time_t mtime, off_t size)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, mode);
	assert_int_equal(st.st_mtime, mtime);
	assert_int_equal(st.st_size, size);
}

static void test_file_ops_local(void **state)
{
	static char blk[4096], big0[200 << 10];
	char dir[1024], a[1200], big[1200], conv[1200], mnt2[600], a2[1300], big2[1300];
	integ_path(&env, "fops", dir, sizeof(dir));
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(big, sizeof(big), "%s/big", dir);
	integ_write_file(a, "inline bytes", 12);
	memset(big0, 0x42, sizeof(big0));
	integ_write_file(big, big0, sizeof(big0)); /* past the inline threshold: chunks */
	memset(blk, 0x17, sizeof(blk));

	pid_t m2 = integ_mount2_start(&env, mnt2, sizeof(mnt2));
	snprintf(a2, sizeof(a2), "%s/fops/a", mnt2);
	snprintf(big2, sizeof(big2), "%s/fops/big", mnt2);
	assert_true(wait_exists(a2, 1, NAME_BOUND_MS + SLACK_MS));

	uint64_t t0;
	unsigned long long before = integ_meta_requests_settled(&env, 2, &t0);
	for (int i = 0; i < NFOPS; i++) {
		struct timespec ts[2] = {{1000 + i, 0}, {2000 + i, 0}};
		assert_int_equal(chmod(a, i % 2 ? 0600 : 0640), 0);
		assert_int_equal(utimensat(AT_FDCWD, a, ts, 0), 0);
		int fd = open(a, O_RDWR);
		assert_true(fd >= 0);
		assert_int_equal(close(fd), 0);
		fd = open(big, O_WRONLY);
		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, blk, sizeof(blk), (off_t)sizeof(big0) + 4096 * i),
				 (ssize_t)sizeof(blk));
		assert_int_equal(close(fd), 0);
	}
	/* an inline file grown past the threshold converts (begin, commit) */
	snprintf(conv, sizeof(conv), "%s/conv", dir);
	integ_write_file(conv, "x", 1);
	int fd = open(conv, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, big0, sizeof(big0), 1), (ssize_t)sizeof(big0));
	assert_int_equal(close(fd), 0);
	uint64_t ms = (clock_mono_ns() - t0) / 1000000u;
	unsigned long long sent = integ_meta_requests(&env) - before - 1;
	print_message("%d rounds of chmod, utimens, 2 opens, a write, 2 closes in %llu ms: "
		      "%llu meta requests\n", NFOPS, (unsigned long long)ms, sent);
	/* the heartbeats and kicks of a few seconds; over RPC >= 5 * NFOPS */
	assert_true(sent <= NFOPS / 4 + ms / 50);

	/* the last changes, then the mount dies at once with a file held open */
	const off_t size = (off_t)sizeof(big0) + 4096 * NFOPS;
	struct timespec last[2] = {{10, 0}, {7777, 0}};
	int held = open(big, O_RDWR);
	assert_true(held >= 0);
	assert_int_equal(chmod(a, 0604), 0);
	assert_int_equal(utimensat(AT_FDCWD, a, last, 0), 0);
	assert_true(integ_fsck_sessions(&env) >= 1);
	/* the mount over RPC sees them within its attribute timeout */
	assert_true(wait_attrs(a2, 0604, 7777, ATTR_BOUND_MS + SLACK_MS));
	integ_kill9(&env, "mount");
	close(held);
	/* meta's view: the mount over RPC, its attribute cache expired */
	clock_sleep_ms(ATTR_BOUND_MS + 100);
	expect_file(a2, 0604, 7777, 12);
	struct stat st;
	assert_int_equal(stat(big2, &st), 0);
	assert_int_equal(st.st_size, size);
	integ_mount2_stop(&m2);
	assert_int_equal(up_again("up-after-fops"), 0);
	expect_file(a, 0604, 7777, 12);
	assert_int_equal(stat(big, &st), 0);
	assert_int_equal(st.st_size, size);
	assert_int_equal(stat(conv, &st), 0);
	assert_int_equal(st.st_size, (off_t)sizeof(big0) + 1);
	/* the held file's session (recorded in-process) is pruned by meta */
	uint64_t until = clock_mono_ms() + PRUNE_MS;
	long long left;
	while ((left = integ_fsck_sessions(&env)) != 0 && clock_mono_ms() < until)
		clock_sleep_ms(1000);
	assert_int_equal(left, 0);
}

/* Lines of the file at PATH holding NEEDLE (0 if none or no file). */
static int lines_with(const char *path, const char *needle)
{
	char line[2048];
	int n = 0;
	FILE *fp = fopen(path, "r");
	if (!fp)
		return 0;
	while (fgets(line, sizeof(line), fp))
		n += strstr(line, needle) != NULL;
	fclose(fp);
	return n;
}

/* The creating thread of test_compact_handoff. */
struct busy {
	char dir[1100];
	_Atomic int stop;
	_Atomic int made;    /* creates acknowledged */
	int failed_errno;    /* first failure, 0 if none */
};

static void *busy_main(void *arg)
{
	struct busy *b = arg;
	char f[1200];
	while (!atomic_load(&b->stop)) {
		int i = atomic_load(&b->made);
		snprintf(f, sizeof(f), "%s/b%06d", b->dir, i);
		int fd = open(f, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0 || close(fd)) {
			b->failed_errno = errno ? errno : EIO;
			break;
		}
		atomic_store(&b->made, i + 1);
		clock_sleep_ms(2);
	}
	return NULL;
}

static void test_compact_handoff(void **state)
{
	char p[1200], f[1300], mlog[700], melog[700];
	static struct busy b;
	pthread_t th;

	snprintf(mlog, sizeof(mlog), "%s/logs/mount.log", env.data);
	snprintf(melog, sizeof(melog), "%s/logs/meta.log", env.data);
	/* earlier tests may have compacted: count what this one adds */
	int released0 = lines_with(mlog, "store released for the service");
	int compacted0 = lines_with(melog, "lmdb: compacted online");
	int reopened0 = lines_with(mlog, "in-process meta: store open again");
	integ_path(&env, "bulk", p, sizeof(p));
	assert_int_equal(mkdir(p, 0755), 0);
	for (int i = 0; i < NBULK; i++) {
		snprintf(f, sizeof(f), "%s/f%05d", p, i);
		integ_touch(f);
	}
	integ_path(&env, "busy", b.dir, sizeof(b.dir));
	assert_int_equal(mkdir(b.dir, 0755), 0);
	assert_int_equal(pthread_create(&th, NULL, busy_main, &b), 0);
	for (int i = 0; i < NBULK; i++) {
		snprintf(f, sizeof(f), "%s/f%05d", p, i);
		assert_int_equal(unlink(f), 0);
	}
	uint64_t until = clock_mono_ms() + COMPACT_BOUND_MS;
	int released = 0, compacted = 0, reopened = 0, made_released = -1;
	while (clock_mono_ms() < until && !(compacted && reopened)) {
		if (!released && lines_with(mlog, "store released for the service") > released0) {
			released = 1;
			made_released = atomic_load(&b.made);
		}
		compacted = lines_with(melog, "lmdb: compacted online") > compacted0;
		reopened = lines_with(mlog, "in-process meta: store open again") > reopened0;
		clock_sleep_ms(20);
	}
	clock_sleep_ms(300); /* creates after the reopen, in-process again */
	atomic_store(&b.stop, 1);
	pthread_join(th, NULL);
	int made = atomic_load(&b.made);
	print_message("released=%d compacted=%d reopened=%d; %d creates, %d before the "
		      "release was seen, first error %d\n", released, compacted, reopened, made,
		      made_released, b.failed_errno);
	assert_int_equal(b.failed_errno, 0);
	assert_true(released && compacted && reopened);
	assert_true(made > made_released);
	assert_int_equal(integ_count_entries(b.dir), made);
	for (int i = 0; i < made; i++) {
		struct stat st;
		snprintf(f, sizeof(f), "%s/b%06d", b.dir, i);
		assert_int_equal(stat(f, &st), 0);
	}
	/* the store serves in-process again: a namespace op with meta stopped */
	int meta = integ_role_pid(&env, "meta");
	assert_true(meta > 0);
	assert_int_equal(testenv_stop(meta), 0);
	int rc = local_only_ops(b.dir);
	kill(meta, SIGCONT);
	assert_int_equal(rc, 0);
}

static void test_no_store(void **state)
{
	char url[800], typo[700], mnt[700], log[700], cid[128], port[32], addr[64], secret[700];
	snprintf(typo, sizeof(typo), "%s/metax", env.data);
	snprintf(url, sizeof(url), "lmdb://%s?sync=window", typo);
	snprintf(mnt, sizeof(mnt), "%s/mnt-nostore", env.dir);
	snprintf(log, sizeof(log), "%s/mount-nostore.log", env.dir);
	snprintf(secret, sizeof(secret), "%s/secret", env.data);
	integ_conf_get(&env, "mgmtd_port", port, sizeof(port));
	integ_conf_get(&env, "cluster_id", cid, sizeof(cid));
	snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
	assert_int_equal(mkdir(mnt, 0755), 0);
	char *argv[] = {(char *)testenv_chainfs(), "mount", "--mgmtd", addr, "--cluster-id", cid,
			"--secret-file", secret, "--meta-local", url, mnt, NULL};
	assert_int_not_equal(integ_run(argv, NULL, log, 30000), 0);
	assert_true(testenv_file_has(log, "no meta store there"));
	struct stat st;
	assert_int_equal(stat(typo, &st), -1);
	assert_int_equal(errno, ENOENT);
}

/* The CPU (utime + stime, clock ticks) PID has used so far; -1 when
 * /proc does not say. */
static long proc_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *p = strrchr(buf, ')'); /* the name may hold spaces */
	unsigned long ut, st;
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (long)(ut + st);
}

/* The reader's spin-wait (fuse_loop.c fl_spin; CFS_FUSE_SPIN_US, forced
 * past the CPU-pressure gate with the test hook) answers every request it
 * polls for, and ends: a mount left idle after a walk of creates and
 * stats uses next to no CPU. Without the bound the reader polls on and
 * the idle second costs a whole CPU (~100 ticks). */
#define SPIN_FILES 300
static void test_spin_bounded(void **state)
{
	char mnt2[600], d[1024], f[1200];
	assert_int_equal(setenv("CFS_FUSE_SPIN_US", "1000", 1), 0);
	assert_int_equal(setenv("CFS_FUSE_TEST_SPIN_FORCE", "1", 1), 0);
	pid_t m2 = integ_mount2_start(&env, mnt2, sizeof(mnt2));
	unsetenv("CFS_FUSE_SPIN_US");
	unsetenv("CFS_FUSE_TEST_SPIN_FORCE");
	char log[700];
	snprintf(log, sizeof(log), "%s/mount2.log", env.dir);
	assert_true(testenv_file_has(log, "the reader polls up to 1000 us"));
	snprintf(d, sizeof(d), "%s/spin", mnt2);
	assert_int_equal(mkdir(d, 0755), 0);
	for (int i = 0; i < SPIN_FILES; i++) {
		snprintf(f, sizeof(f), "%s/f%04d", d, i);
		integ_touch(f);
	}
	assert_true(integ_drop_dentries() || getuid() != 0);
	for (int i = 0; i < SPIN_FILES; i++) {
		struct stat st;
		snprintf(f, sizeof(f), "%s/f%04d", d, i);
		assert_int_equal(stat(f, &st), 0);
		assert_true(S_ISREG(st.st_mode));
		assert_int_equal(st.st_size, 0);
	}
	snprintf(f, sizeof(f), "%s/absent", d);
	struct stat st;
	assert_int_equal(stat(f, &st), -1);
	assert_int_equal(errno, ENOENT);
	usleep(300 * 1000);
	long t0 = proc_cpu_ticks(m2);
	usleep(1000 * 1000);
	long t1 = proc_cpu_ticks(m2);
	assert_true(t0 >= 0 && t1 >= t0);
	print_message("mount's CPU over an idle second after the walk: %ld ticks\n", t1 - t0);
	assert_true(t1 - t0 < 30);
	integ_mount2_stop(&m2);
}

int main(void)
{
	integ_require_fuse();
	/* Before any thread: every `chainfs up` here runs the namespace
	 * changes on the reading thread, whose waits test_wait_hands_over
	 * is about (fuse_loop.h FUSELOOP_NS_FAST) */
	setenv("CFS_FUSE_NS_FAST", "1", 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_kill9_meta),
		cmocka_unit_test(test_two_mounts),
		cmocka_unit_test(test_kill9_mount_in_write),
		cmocka_unit_test(test_gc_kick),
		cmocka_unit_test(test_file_ops_local),
		cmocka_unit_test(test_compact_handoff),
		cmocka_unit_test(test_no_store),
		cmocka_unit_test(test_wait_hands_over),
		cmocka_unit_test(test_write_hands_over),
		cmocka_unit_test(test_spin_bounded),
	};
	return integ_main(&env, "metalocal", tests, sizeof(tests) / sizeof(tests[0]));
}
