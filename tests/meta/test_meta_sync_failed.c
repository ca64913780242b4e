/* test_meta_sync_failed.c - a real `chainfs meta` process whose LMDB sync
 * fails refuses writes and keeps serving reads; a restart takes writes
 * again (README "Durability of metadata").
 *
 * After a failed writeback the kernel marks the pages clean, so a commit
 * after the failed sync could become durable (a later sync that works)
 * on top of pages that never reached the disk. kv_lmdb.c refuses every
 * commit from the first failed sync on, and meta answers every mutation
 * with EIO and a message that names the cause and the remedy.
 *
 *   1. meta (lmdb sync=window, 20 ms) without the hook: a directory and
 *      two files; stopped (SIGTERM: its close syncs).
 *   2. meta again with CFS_TEST_LMDB_SYNC_FAIL=1 (its first sync fails,
 *      without syncing): creates go on until one fails; it must fail with
 *      -EIO, the reply text must say "refuses writes", every later
 *      create and a mkdir fail the same way, while a lookup and a
 *      getattr of the earlier files work; the log has the KV's line.
 *      Before the fix every create succeeded (only fsync failed).
 *      `chainfs admin meta-status` says writes=refused, exit status 1.
 *   3. meta restarted without the hook: a create works, the earlier
 *      files are there; meta-status says writes=ok.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/meta_client.h"
#include "common/clock.h"
#include "meta/meta.h"
#include "testenv.h"

static const char SECRET[] = "meta-sync-failed-test-secret-0123456789";
static const char CLUSTER[] = "metasyncfail";
static const struct meta_cred ROOT = {0, 0, 0, NULL};

static char *dir;
static char kv_url[600], secret_path[512], addr[64], logpath[600];
static uint16_t port;
static pid_t proc;

static int port_open(void *arg)
{
	return testenv_port_open(*(uint16_t *)arg);
}

/* Starts meta; with FAIL its engine's first sync fails (the env hook). */
static void start_meta(int fail, int n)
{
	char listen[64];
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	snprintf(logpath, sizeof(logpath), "%s/meta%d.log", dir, n);
	char *argv[] = {"env",
	                fail ? "CFS_TEST_LMDB_SYNC_FAIL=1" : "CFS_TEST_LMDB_SYNC_FAIL=0",
	                (char *)testenv_chainfs(),
	                "meta",
	                "--kv",
	                kv_url,
	                "--listen",
	                listen,
	                "--cluster-id",
	                (char *)CLUSTER,
	                "--secret-file",
	                secret_path,
	                "--threads",
	                "4",
	                "--log-level",
	                "info",
	                NULL};
	proc = testenv_spawn(argv, logpath);
	assert_true(testenv_wait(port_open, &port, 20000));
}

static void stop_meta(void)
{
	int st = testenv_kill(proc, SIGTERM);
	proc = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail_msg("meta exit status %d (log %s)", st, logpath);
}

static meta_client *client(void)
{
	meta_client *c = NULL;
	char err[256];
	const char *a[1] = {addr};
	struct meta_client_opts o = {.addrs = a,
	                             .naddrs = 1,
	                             .cluster_id = CLUSTER,
	                             .secret = (const uint8_t *)SECRET,
	                             .secret_len = strlen(SECRET),
	                             .timeout_ms = 3000,
	                             .retry_ms = 5000,
	                             .down_ms = 500};
	if (meta_client_new(&o, &c, err, sizeof(err)))
		fail_msg("meta_client_new: %s", err);
	return c;
}

/* `chainfs admin meta-status` against the instance: its exit status;
 * its output (appended) in DIR/status-N.out. */
static int meta_status(int n, char *out, size_t cap)
{
	snprintf(out, cap, "%s/status-%d.out", dir, n);
	char *argv[] = {(char *)testenv_chainfs(),
	                "admin",
	                "meta-status",
	                "--addr",
	                addr,
	                "--cluster-id",
	                (char *)CLUSTER,
	                "--secret-file",
	                secret_path,
	                NULL};
	return testenv_run(argv, NULL, out, 20000);
}

static int create(meta_client *c, uint64_t parent, const char *name)
{
	struct meta_inode f;
	uint64_t session = 0;
	return meta_client_create(c, &ROOT, parent, meta_name_c(name), 0644, META_O_EXCL, &f,
	                          &session);
}

static void test_sync_failed(void **state)
{
	struct meta_inode d, x;
	char name[64];
	(void)state;

	/* 1. */
	start_meta(0, 1);
	meta_client *c = client();
	assert_int_equal(meta_client_mkdir(c, &ROOT, META_ROOT_INO, meta_name_c("d"), 0755, &d), 0);
	assert_int_equal(create(c, d.ino, "a"), 0);
	assert_int_equal(create(c, d.ino, "b"), 0);
	meta_client_free(c);
	stop_meta();

	/* 2. */
	start_meta(1, 2);
	c = client();
	int rc = 0, made = 0;
	uint64_t until = clock_mono_ms() + 10000;
	while (clock_mono_ms() < until) {
		snprintf(name, sizeof(name), "c%d", made);
		if ((rc = create(c, d.ino, name)))
			break;
		made++;
		clock_sleep_ms(20);
	}
	assert_int_equal(rc, -EIO);
	assert_non_null(strstr(meta_client_last_error(), "refuses writes"));
	assert_true(testenv_file_has(logpath, "writes are refused with EIO"));
	assert_int_equal(create(c, d.ino, "after"), -EIO);
	assert_int_equal(meta_client_mkdir(c, &ROOT, d.ino, meta_name_c("sub"), 0755, NULL), -EIO);
	assert_int_equal(meta_client_lookup(c, &ROOT, d.ino, meta_name_c("a"), &x), 0);
	assert_int_equal(meta_client_getattr(c, &ROOT, x.ino, &x), 0);
	assert_int_equal(meta_client_lookup(c, &ROOT, d.ino, meta_name_c("b"), &x), 0);
	assert_int_equal(meta_client_lookup(c, &ROOT, d.ino, meta_name_c("after"), &x), -ENOENT);
	char out[700];
	assert_int_equal(meta_status(2, out, sizeof(out)), 1);
	assert_true(testenv_file_has(out, "writes=refused"));
	meta_client_free(c);
	stop_meta();

	/* 3. */
	start_meta(0, 3);
	c = client();
	assert_int_equal(create(c, d.ino, "z"), 0);
	assert_int_equal(meta_client_lookup(c, &ROOT, d.ino, meta_name_c("a"), &x), 0);
	assert_int_equal(meta_client_lookup(c, &ROOT, d.ino, meta_name_c("b"), &x), 0);
	assert_int_equal(meta_client_lookup(c, &ROOT, d.ino, meta_name_c("z"), &x), 0);
	assert_int_equal(meta_status(3, out, sizeof(out)), 0);
	assert_true(testenv_file_has(out, "writes=ok"));
	meta_client_free(c);
	stop_meta();
}

int main(void)
{
	dir = testenv_tmpdir("meta_sync_failed");
	testenv_write_secret(dir, SECRET, secret_path, sizeof(secret_path));
	snprintf(kv_url, sizeof(kv_url), "lmdb://%s/kv?sync=window&sync_ms=20", dir);
	port = testenv_free_port();
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_sync_failed)};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	if (!rc)
		testenv_cleanup();
	return rc;
}
