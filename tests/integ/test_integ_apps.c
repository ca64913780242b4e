/* test_integ_apps.c - real applications on a real mount.
 *
 * One `chainfs up` cluster for the file: fio writes four files with
 * --verify=crc32c (two jobs each, 1 MiB and 4 KiB blocks) and reads every
 * block back against its checksum; `git clone` of a small local repository
 * (made here with a few commits) onto the mount, then `git fsck --full` and
 * a checkout comparison; sqlite3 creates a database on the mount, inserts
 * rows in transactions and queries them back. Each tool runs with a bound;
 * a tool that is not installed fails the test (they are part of the
 * project's dependencies).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "integ_env.h"

static struct integ env;

/* Runs ARGV in CWD with output to DIR/NAME.out; prints it on failure. */
static int run(const char *name, const char *cwd, char *const argv[], int timeout_ms)
{
	char log[700];
	snprintf(log, sizeof(log), "%s/%s.out", env.dir, name);
	unlink(log);
	int rc = integ_run(argv, cwd, log, timeout_ms);
	if (rc != 0) {
		fprintf(stderr, "%s exited %d; output:\n", argv[0], rc);
		integ_print_file(log);
	}
	return rc;
}

/* One fio pass (log TAG) of two psync O_DIRECT jobs NAME over one file
 * each in DIR, --size SIZE, --bs BS, --rw RW, checked with crc32c; VERIFY
 * says when ("--do_verify=1": after writing; "--verify_only": a read of
 * what an earlier pass wrote). Returns fio's exit status. */
static int fio_pass(const char *tag, const char *dir, const char *name, const char *size,
		    const char *bs, const char *rw, const char *verify)
{
	char dirarg[1100], namearg[64], sizearg[64], bsarg[64], rwarg[64];
	snprintf(dirarg, sizeof(dirarg), "--directory=%s", dir);
	snprintf(namearg, sizeof(namearg), "--name=%s", name);
	snprintf(sizearg, sizeof(sizearg), "--size=%s", size);
	snprintf(bsarg, sizeof(bsarg), "--bs=%s", bs);
	snprintf(rwarg, sizeof(rwarg), "--rw=%s", rw);
	char *argv[] = {"fio",           namearg,         dirarg,         "--nrfiles=1",
	                "--numjobs=2",   sizearg,         bsarg,          rwarg,
	                "--ioengine=psync", "--direct=1", "--verify=crc32c", (char *)verify,
	                "--verify_fatal=1", NULL};
	return run(tag, dir, argv, 120000);
}

static void test_fio_verify(void **state)
{
	char dir[1024];
	integ_path(&env, "fio", dir, sizeof(dir));
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(fio_pass("fio-seq", dir, "seq", "24M", "1M", "write", "--do_verify=1"), 0);
	assert_int_equal(fio_pass("fio-rand", dir, "rand", "4M", "4k", "randwrite", "--do_verify=1"),
	                 0);
	/* And once more reading only, as a separate pass over the same files. */
	assert_int_equal(fio_pass("fio-verify", dir, "seq", "24M", "1M", "read", "--verify_only"), 0);
}

static void test_git_clone(void **state)
{
	char src[700], dst[1024], f[800];
	snprintf(src, sizeof(src), "%s/src-repo", env.dir);
	integ_path(&env, "clone", dst, sizeof(dst));
	char *init[] = {"git", "init", "-q", src, NULL};
	assert_int_equal(run("git-init", NULL, init, 30000), 0);
	for (int i = 0; i < 3; i++) {
		snprintf(f, sizeof(f), "%s/file%d.txt", src, i);
		FILE *fp = fopen(f, "w");
		assert_non_null(fp);
		for (int k = 0; k < 2000 * (i + 1); k++)
			fprintf(fp, "line %d of file %d\n", k, i);
		fclose(fp);
		char *add[] = {"git", "add", ".", NULL};
		assert_int_equal(run("git-add", src, add, 30000), 0);
		char msg[32];
		snprintf(msg, sizeof(msg), "commit %d", i);
		char *commit[] = {"git",    "-c", "user.name=t", "-c", "user.email=t@t",
		                  "commit", "-q", "-m",          msg,  NULL};
		assert_int_equal(run("git-commit", src, commit, 30000), 0);
	}
	char *clone[] = {"git", "clone", "-q", "--no-hardlinks", src, dst, NULL};
	assert_int_equal(run("git-clone", NULL, clone, 120000), 0);
	char *fsck[] = {"git", "fsck", "--full", "--strict", NULL};
	assert_int_equal(run("git-fsck", dst, fsck, 120000), 0);
	char *status[] = {"git", "diff", "--quiet", "HEAD", NULL};
	assert_int_equal(run("git-diff", dst, status, 60000), 0);
	char a[900], b[1200];
	snprintf(a, sizeof(a), "%s/file2.txt", src);
	snprintf(b, sizeof(b), "%s/file2.txt", dst);
	int64_t ca = integ_file_crc(a), cb = integ_file_crc(b);
	assert_true(ca >= 0);
	assert_int_equal(ca, cb);
}

static void test_sqlite(void **state)
{
	char db[1024], out[700];
	integ_path(&env, "test.sqlite", db, sizeof(db));
	const char *sql =
	    "PRAGMA journal_mode=DELETE;"
	    "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
	    "BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<5000)"
	    " INSERT INTO t(v) SELECT printf('row-%d', x) FROM c; COMMIT;"
	    "CREATE INDEX iv ON t(v);"
	    "BEGIN; UPDATE t SET v = v || '-x' WHERE id % 7 = 0; COMMIT;"
	    "PRAGMA integrity_check;"
	    "SELECT count(*), sum(id) FROM t;"
	    "SELECT v FROM t WHERE id = 4914;";
	char *argv[] = {"sqlite3", db, (char *)sql, NULL};
	assert_int_equal(run("sqlite", NULL, argv, 120000), 0);
	snprintf(out, sizeof(out), "%s/sqlite.out", env.dir);
	char buf[4096] = {0};
	FILE *f = fopen(out, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	assert_non_null(strstr(buf, "\nok\n"));
	assert_non_null(strstr(buf, "5000|12502500"));
	assert_non_null(strstr(buf, "row-4914-x"));
	/* A second process opens the same database and reads it. */
	char *argv2[] = {"sqlite3", db, "SELECT count(*) FROM t WHERE v LIKE '%-x';", NULL};
	assert_int_equal(run("sqlite2", NULL, argv2, 60000), 0);
	snprintf(out, sizeof(out), "%s/sqlite2.out", env.dir);
	f = fopen(out, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	assert_int_equal(atoi(buf), 714);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fio_verify),
	    cmocka_unit_test(test_git_clone),
	    cmocka_unit_test(test_sqlite),
	};
	return integ_main(&env, "integ-apps", tests, sizeof(tests) / sizeof(tests[0]));
}
