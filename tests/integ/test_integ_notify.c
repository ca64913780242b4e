/* test_integ_notify.c - the directory poll's kernel notifications never
 * wait where the mount must serve a request (fuse/dircache.c, "THE
 * NOTIFIER").
 *
 * A name invalidation (inval_entry) waits in the kernel for its
 * directory's lock, which a create in that directory holds until the
 * mount answers it. Mount B runs with one request thread. On it, one
 * process creates files in directory D without pause (so a CREATE of D,
 * holding D's lock, is nearly always queued), another takes and drops an
 * fcntl lock (each grant runs a directory poll: fuse_fs.c lock_granted),
 * while mount A creates files in D (every poll of B finds D changed by
 * another client and invalidates the names B handed out there). Had the
 * grant's request thread told the kernel itself, it would wait for D's
 * lock while the only thread that can answer the CREATE holding it is
 * itself: the mount hangs. The workload must end within a bound; on a
 * hang the workers are killed (which ends their requests and frees D's
 * lock) and the test fails.
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "integ_env.h"
#include "testenv.h"

#define RUN_MS   4000  /* each worker's loop */
#define BOUND_MS 30000 /* the workers' end, with a loaded 2-core machine's margin */
#define NWORKERS 3
#define SEEN_MS  5000 /* a name another mount made: directory poll + margin */

static struct integ env;
static _Atomic unsigned long *ops; /* per worker, shared with the children */
static pid_t mount2_pid;
static char mnt2[600];

static void test_start_mount2(void **state)
{
	(void)state;
	mount2_pid = integ_mount2_start_args(&env, mnt2, sizeof(mnt2), "--threads=1");
	char d[700];
	snprintf(d, sizeof(d), "%s/d", env.mnt);
	assert_int_equal(mkdir(d, 0755), 0);
}

/* Creates (and now and then removes) files named TAG.I in DIR until
 * RUN_MS passed: exits 0, or 1 on an error other than a name taken. */
static void creator(const char *dir, const char *tag, _Atomic unsigned long *done)
{
	uint64_t end = clock_mono_ms() + RUN_MS;
	char p[800];
	for (unsigned i = 0; clock_mono_ms() < end; i++) {
		snprintf(p, sizeof(p), "%s/%s.%u", dir, tag, i % 512);
		int fd = open(p, O_CREAT | O_WRONLY, 0644);
		if (fd < 0) {
			fprintf(stderr, "create %s: %s\n", p, strerror(errno));
			_exit(1);
		}
		close(fd);
		(*done)++;
		if (i % 512 == 511)
			for (unsigned j = 0; j < 512; j += 2) {
				snprintf(p, sizeof(p), "%s/%s.%u", dir, tag, j);
				unlink(p);
			}
	}
	_exit(0);
}

static void locker(const char *path, _Atomic unsigned long *done)
{
	uint64_t end = clock_mono_ms() + RUN_MS;
	int fd = open(path, O_CREAT | O_RDWR, 0644);
	if (fd < 0)
		_exit(1);
	while (clock_mono_ms() < end) {
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		if (fcntl(fd, F_SETLKW, &fl) != 0) {
			fprintf(stderr, "lock: %s\n", strerror(errno));
			_exit(1);
		}
		fl.l_type = F_UNLCK;
		fcntl(fd, F_SETLK, &fl);
		(*done)++;
	}
	close(fd);
	_exit(0);
}

static void test_creates_beside_grants_and_foreign_changes(void **state)
{
	(void)state;
	char da[700], db[700], lk[700];
	snprintf(da, sizeof(da), "%s/d", env.mnt);
	snprintf(db, sizeof(db), "%s/d", mnt2);
	snprintf(lk, sizeof(lk), "%s/lockfile", mnt2);
	ops = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(ops != MAP_FAILED);
	pid_t pid[NWORKERS];
	for (int i = 0; i < NWORKERS; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			if (i == 0)
				creator(db, "b", &ops[0]);
			else if (i == 1)
				locker(lk, &ops[1]);
			else
				creator(da, "a", &ops[2]);
		}
	}
	uint64_t deadline = clock_mono_ms() + BOUND_MS;
	int left = NWORKERS, failed = 0, hung = 0;
	while (left) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);
		if (p > 0) {
			for (int i = 0; i < NWORKERS; i++)
				if (pid[i] == p)
					pid[i] = 0;
			left--;
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				failed++;
			continue;
		}
		if (clock_mono_ms() >= deadline) {
			/* Killing a worker fails its request and frees D's lock. */
			hung = 1;
			for (int i = 0; i < NWORKERS; i++)
				if (pid[i] > 0)
					kill(pid[i], SIGKILL);
			deadline = UINT64_MAX;
		}
		clock_sleep_ms(20);
	}
	if (hung)
		fail_msg("creates, lock grants and another mount's changes in one directory did "
		         "not end within %d ms: the mount with one request thread hung",
		         BOUND_MS);
	assert_int_equal(failed, 0);
	print_message("creates on B %lu, lock grants on B %lu, creates on A %lu\n", ops[0], ops[1],
	              ops[2]);
	for (int i = 0; i < NWORKERS; i++)
		assert_true(ops[i] > 0);
	munmap((void *)ops, 4096);
	/* And the notifications still reach the kernel: a name B cached as
	 * absent shows once A made it. */
	char pa[800], pb[800];
	snprintf(pa, sizeof(pa), "%s/late", da);
	snprintf(pb, sizeof(pb), "%s/late", db);
	struct stat st;
	assert_int_equal(stat(pb, &st), -1);
	int fd = open(pa, O_CREAT | O_EXCL | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	uint64_t until = clock_mono_ms() + SEEN_MS;
	while (stat(pb, &st) != 0 && clock_mono_ms() < until)
		clock_sleep_ms(20);
	assert_int_equal(stat(pb, &st), 0);
}

static void test_stop_mount2(void **state)
{
	(void)state;
	integ_mount2_stop(&mount2_pid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_mount2),
		cmocka_unit_test(test_creates_beside_grants_and_foreign_changes),
		cmocka_unit_test(test_stop_mount2),
	};
	int rc = integ_main(&env, "notify", tests, sizeof(tests) / sizeof(tests[0]));
	integ_mount2_stop(&mount2_pid);
	return rc;
}
