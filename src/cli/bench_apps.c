/* bench_apps.c - git clone and sqlite3 on the mount beside a local
 * directory (bench_apps.h).
 *
 * The repository has FILES files of 200 B to 8 KiB over 100 directories in
 * one commit, roughly the shape of a source tree; it is cloned with
 * --no-local so git copies objects and checks out every file the way a
 * clone over the network does. The sqlite3 script makes one table and
 * inserts 20,000 rows in 200 transactions (each COMMIT is an fsync of the
 * database and its journal), then reads them back with an aggregate query.
 * Both run as child processes: the figure is what a user of those tools
 * sees, process start included.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/bench_apps.h"
#include "cli/bench_fio.h"
#include "common/clock.h"

#define APPS_SQL_TXNS 200
#define APPS_SQL_ROWS 100 /* per transaction */

/* Runs ARGV; 0 or -1 after a message naming WHAT. */
static int run(const char *what, char *const argv[])
{
	char *out = bench_run_capture(argv);
	if (!out) {
		fprintf(stderr, "chainfs bench fuse: apps: %s failed (%s installed? run it by hand "
		                "to see why)\n",
		        what, argv[0]);
		return -1;
	}
	free(out);
	return 0;
}

static void rm_tree(const char *path)
{
	char *argv[] = {"rm", "-rf", (char *)path, NULL};
	run("rm -rf", argv);
}

/* Writes the FILES-file tree into SRC and commits it. */
static int make_repo(const char *src, long long files)
{
	char path[4400];
	static char data[8192];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)('a' + (i * 7 + i / 61) % 26);
	char *init[] = {"git", "init", "-q", (char *)src, NULL};
	if (run("git init", init))
		return -1;
	for (int d = 0; d < 100; d++) {
		snprintf(path, sizeof(path), "%s/d%02d", src, d);
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return -1;
	}
	for (long long i = 0; i < files; i++) {
		snprintf(path, sizeof(path), "%s/d%02lld/f%06lld.c", src, i % 100, i);
		size_t len = 200 + (size_t)(i * 2654435761u % (sizeof(data) - 200));
		int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
		if (fd < 0)
			return -1;
		char head[64];
		int hl = snprintf(head, sizeof(head), "/* file %lld */\n", i);
		int ok = write(fd, head, (size_t)hl) == hl && write(fd, data, len) == (ssize_t)len;
		close(fd);
		if (!ok)
			return -1;
	}
	char *add[] = {"git", "-C", (char *)src, "add", "-A", NULL};
	char *commit[] = {"git", "-C", (char *)src, "-c", "user.name=bench", "-c",
	                  "user.email=bench@localhost", "commit", "-q", "-m", "tree", NULL};
	return run("git add", add) || run("git commit", commit) ? -1 : 0;
}

/* Seconds of a no-local clone of SRC into DIR/apps-clone, or -1. */
static double time_clone(const char *src, const char *dir)
{
	char url[4400], dst[4400];
	snprintf(url, sizeof(url), "file://%s", src);
	snprintf(dst, sizeof(dst), "%s/apps-clone", dir);
	rm_tree(dst);
	char *clone[] = {"git", "clone", "-q", "--no-local", "--no-hardlinks", url, dst, NULL};
	uint64_t t0 = clock_mono_ns();
	int rc = run("git clone", clone);
	double s = (double)(clock_mono_ns() - t0) / 1e9;
	if (rc == 0) {
		/* A clone that left a file wrong is not a result. */
		char *status[] = {"git", "-C", dst, "status", "--porcelain", NULL};
		char *out = bench_run_capture(status);
		if (!out || *out) {
			fprintf(stderr, "chainfs bench fuse: apps: the clone in %s differs from its "
			                "commit\n",
			        dst);
			rc = -1;
		}
		free(out);
	}
	rm_tree(dst);
	return rc ? -1 : s;
}

/* Seconds of the sqlite3 script SQL on DIR/apps.db, or -1. */
static double time_sqlite(const char *sql, const char *dir)
{
	char db[4400], cmd[4500], journal[4500];
	snprintf(db, sizeof(db), "%s/apps.db", dir);
	snprintf(journal, sizeof(journal), "%s-journal", db);
	snprintf(cmd, sizeof(cmd), ".read %s", sql);
	unlink(db);
	char *argv[] = {"sqlite3", db, cmd, NULL};
	uint64_t t0 = clock_mono_ns();
	char *out = bench_run_capture(argv);
	double s = (double)(clock_mono_ns() - t0) / 1e9;
	long long want = (long long)APPS_SQL_TXNS * APPS_SQL_ROWS;
	int ok = out && strtoll(out, NULL, 10) == want;
	if (!ok)
		fprintf(stderr, "chainfs bench fuse: apps: sqlite3 on %s: %s\n", dir,
		        out ? "wrong row count" : "failed (sqlite3 installed?)");
	free(out);
	unlink(db);
	unlink(journal);
	return ok ? s : -1;
}

static int write_sql(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "PRAGMA synchronous=FULL;\n" /* journal_mode stays DELETE, the default */
	           
	           "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB);\n");
	for (int t = 0; t < APPS_SQL_TXNS; t++) {
		fprintf(f, "BEGIN;\n");
		for (int r = 0; r < APPS_SQL_ROWS; r++)
			fprintf(f, "INSERT INTO t(k, v) VALUES('key-%d-%d', randomblob(200));\n", t, r);
		fprintf(f, "COMMIT;\n");
	}
	fprintf(f, "SELECT count(*) FROM t WHERE length(v) = 200;\n");
	return fclose(f) ? -1 : 0;
}

static void row(const char *what, double m, double r, const char *goal)
{
	char ms[32] = "failed", rs[32] = "failed", q[16] = "-";
	if (m >= 0)
		snprintf(ms, sizeof(ms), "%.2f", m);
	if (r >= 0)
		snprintf(rs, sizeof(rs), "%.2f", r);
	if (m >= 0 && r > 0)
		snprintf(q, sizeof(q), "%.2fx", m / r);
	printf("%-24s %-7s %10s %10s %7s  %s\n", what, "s", ms, rs, q, goal);
	fflush(stdout);
}

int bench_apps_run(const char *mount_dir, const char *raw_dir, long long files)
{
	char src[4300], sql[4300], what[64];
	snprintf(src, sizeof(src), "%s/apps-src", raw_dir);
	snprintf(sql, sizeof(sql), "%s/apps.sql", raw_dir);
	rm_tree(src);
	int failed = make_repo(src, files) || write_sql(sql);
	if (!failed) {
		/* Raw first: the source's pages are then warm for both. */
		double r = time_clone(src, raw_dir), m = time_clone(src, mount_dir);
		char goal[64];
		snprintf(goal, sizeof(goal), "<= 2x local: %s",
		         m < 0 || r <= 0 ? "-" : m / r <= 2.0 ? "met" : "missed");
		snprintf(what, sizeof(what), "git clone %lldk files", files / 1000);
		row(what, m, r, goal);
		failed |= m < 0 || r < 0;
		r = time_sqlite(sql, raw_dir);
		m = time_sqlite(sql, mount_dir);
		snprintf(what, sizeof(what), "sqlite3 %dk rows/%d txns", APPS_SQL_TXNS * APPS_SQL_ROWS / 1000,
		         APPS_SQL_TXNS);
		row(what, m, r, "report");
		failed |= m < 0 || r < 0;
	}
	rm_tree(src);
	unlink(sql);
	return failed ? -1 : 0;
}
