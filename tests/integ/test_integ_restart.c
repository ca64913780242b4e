/* test_integ_restart.c - `chainfs down` then `chainfs up` keeps every file.
 *
 * Writes a tree (files of 0 bytes to 9 MiB + a few, some sparse, nested
 * directories, a symlink, a hard link, an xattr), records each file's size
 * and CRC32C, brings the whole cluster down (checking nothing is left
 * running), brings it up again on the same directory (the recorded ports
 * and the data are reused), and compares everything. Then it writes more
 * after the restart, to show the restarted cluster accepts writes.
 * Then: `up` again on the running cluster keeps every role; `up` of another
 * cluster on the same mount point fails with "busy" and leaves the running
 * mount alone; after a kill -9 of storage1 whose port another process
 * took, `up` fails naming the bind error (it once reported the service
 * started) while reads fail over to the other replicas, and once the
 * port is free `up` restarts it; SIGTERM to the mount process unmounts and ends
 * it (the teardown's `down` stops the rest).
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
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "integ_env.h"
#include "testenv.h"

static struct integ env;

struct rec {
	const char *rel;
	size_t size;
	off_t at; /* data starts here (a hole before it) */
	int64_t crc;
};

static struct rec files[] = {
    {"empty", 0, 0, 0},
    {"small", 100, 0, 0},
    {"d1/chunk", 1 << 20, 0, 0},
    {"d1/d2/odd", (9u << 20) + 3, 0, 0},
    {"d1/d2/d3/holey", 4096, 3u << 20, 0},
    {"d4/many-a", 70000, 0, 0},
    {"d4/many-b", 70001, 0, 0},
};

static void mk(const char *rel)
{
	char path[1024];
	integ_path(&env, rel, path, sizeof(path));
	assert_int_equal(mkdir(path, 0755), 0);
}

static void test_restart(void **state)
{
	char path[1024], buf[64];
	mk("d1");
	mk("d1/d2");
	mk("d1/d2/d3");
	mk("d4");
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct rec *r = &files[i];
		uint8_t *data = malloc(r->size + 1);
		assert_non_null(data);
		for (size_t k = 0; k < r->size; k++)
			data[k] = (uint8_t)(k * 31 + i * 7 + (k >> 12));
		integ_path(&env, r->rel, path, sizeof(path));
		int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0640);
		assert_true(fd >= 0);
		if (r->size)
			assert_int_equal(pwrite(fd, data, r->size, r->at), (ssize_t)r->size);
		assert_int_equal(close(fd), 0);
		free(data);
		r->crc = integ_file_crc(path);
		assert_true(r->crc >= 0);
	}
	char tgt[1024];
	integ_path(&env, "link-to-odd", path, sizeof(path));
	assert_int_equal(symlink("d1/d2/odd", path), 0);
	integ_path(&env, "small", tgt, sizeof(tgt));
	integ_path(&env, "d4/small-hard", path, sizeof(path));
	assert_int_equal(link(tgt, path), 0);
	assert_int_equal(setxattr(tgt, "user.k", "v1", 2, 0), 0);

	integ_down(&env);
	integ_up(&env);

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct rec *r = &files[i];
		struct stat st;
		integ_path(&env, r->rel, path, sizeof(path));
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal((long long)st.st_size, (long long)(r->at + (off_t)r->size));
		assert_int_equal((int)(st.st_mode & 07777), 0640);
		if (integ_file_crc(path) != r->crc)
			fprintf(stderr, "content of %s changed across the restart\n", r->rel);
		assert_int_equal(integ_file_crc(path), r->crc);
	}
	integ_path(&env, "link-to-odd", path, sizeof(path));
	assert_int_equal(readlink(path, buf, sizeof(buf)), 9);
	assert_memory_equal(buf, "d1/d2/odd", 9);
	integ_path(&env, "d4/small-hard", path, sizeof(path));
	struct stat a, b;
	assert_int_equal(stat(path, &a), 0);
	assert_int_equal(stat(tgt, &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	assert_int_equal((int)a.st_nlink, 2);
	assert_int_equal(getxattr(tgt, "user.k", buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "v1", 2);

	integ_path(&env, "after-restart", path, sizeof(path));
	int fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "still writable", 14), 14);
	assert_int_equal(pread(fd, buf, 14, 0), 14);
	assert_memory_equal(buf, "still writable", 14);
	assert_int_equal(close(fd), 0);
}

static void read_out(const char *log, char *out, size_t cap)
{
	FILE *f = fopen(log, "r");
	assert_non_null(f);
	size_t n = fread(out, 1, cap - 1, f);
	fclose(f);
	out[n] = 0;
}

/* `chainfs up` again on the running cluster keeps every role; `up` of
 * another cluster on this mount point fails with "busy". */
static void test_up_again_and_busy(void **state)
{
	char log[700], other[700], out[8192];
	snprintf(log, sizeof(log), "%s/again.out", env.dir);
	char *again[] = {(char *)testenv_chainfs(), "up", "--dir", env.data, NULL};
	assert_int_equal(integ_run(again, NULL, log, 60000), 0);
	read_out(log, out, sizeof(out));
	assert_non_null(strstr(out, "mount     "));
	assert_non_null(strstr(out, "already running"));
	snprintf(log, sizeof(log), "%s/busy.out", env.dir);
	snprintf(other, sizeof(other), "%s/other", env.dir);
	char *argv[] = {(char *)testenv_chainfs(), "up", "--dir", other, "--mount", env.mnt, NULL};
	assert_int_equal(integ_run(argv, NULL, log, 60000), 1);
	read_out(log, out, sizeof(out));
	assert_non_null(strstr(out, "busy"));
	struct stat st;
	assert_int_equal(stat(env.mnt, &st), 0); /* the running mount is untouched */
	assert_int_equal((int)st.st_ino, 1);
}

/* kill -9 of storage1, then another process listens on its port: `up`
 * must fail with the service's bind error (not report it started), reads
 * through the mount keep working from the other replicas, and `up` starts
 * storage1 again once the port is free. */
static void test_storage_port_taken(void **state)
{
	char path[1024], port[32], log[700], out[8192];
	integ_path(&env, "d1/chunk", path, sizeof(path));
	int64_t crc = integ_file_crc(path);
	assert_true(crc >= 0);
	integ_conf_get(&env, "storage1_port", port, sizeof(port));
	int pid = integ_kill9(&env, "storage1");

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	int one = 1;
	assert_int_equal(setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)atoi(port)),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	/* The killed process's other threads may still hold the port for a
	 * moment after /proc shows it a zombie (the race rpc_server_start
	 * retries for). */
	int brc = -1;
	for (int i = 0; i < 100 && (brc = bind(lfd, (struct sockaddr *)&a, sizeof(a))); i++)
		usleep(50000);
	assert_int_equal(brc, 0);
	assert_int_equal(listen(lfd, 16), 0);

	snprintf(log, sizeof(log), "%s/taken.out", env.dir);
	char *up[] = {(char *)testenv_chainfs(), "up", "--dir", env.data, NULL};
	int rc = integ_run(up, NULL, log, 60000);
	read_out(log, out, sizeof(out));
	if (rc == 0)
		fprintf(stderr, "up succeeded with storage1's port taken:\n%s\n", out);
	assert_int_not_equal(rc, 0);
	assert_non_null(strstr(out, "Address already in use"));
	/* Reads fail over while storage1 is down. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(integ_file_crc(path), crc);

	close(lfd);
	snprintf(log, sizeof(log), "%s/freed.out", env.dir);
	assert_int_equal(integ_run(up, NULL, log, 60000), 0);
	read_out(log, out, sizeof(out));
	assert_non_null(strstr(out, "storage1"));
	assert_true(integ_role_pid(&env, "storage1") != pid);
	int serving = 0;
	for (int i = 0; i < 150 && !(serving = integ_all_serving(&env)); i++)
		usleep(200000);
	assert_true(serving);
	assert_int_equal(integ_file_crc(path), crc);
}

/* SIGTERM to the mount process unmounts cleanly and ends it. */
static void test_mount_sigterm(void **state)
{
	int pid = integ_role_pid(&env, "mount");
	assert_true(pid > 1);
	assert_int_equal(kill(pid, SIGTERM), 0);
	struct stat a, b;
	char parent[700];
	snprintf(parent, sizeof(parent), "%s/..", env.mnt);
	int unmounted = 0;
	for (int i = 0; i < 500 && !unmounted; i++) {
		usleep(20000);
		unmounted = stat(env.mnt, &a) == 0 && stat(parent, &b) == 0 && a.st_dev == b.st_dev;
	}
	assert_true(unmounted);
	int gone = !integ_pid_alive(pid);
	for (int i = 0; i < 500 && !gone; i++) {
		usleep(20000);
		gone = !integ_pid_alive(pid);
	}
	assert_true(gone);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_restart),
	    cmocka_unit_test(test_up_again_and_busy),
	    cmocka_unit_test(test_storage_port_taken),
	    cmocka_unit_test(test_mount_sigterm),
	};
	return integ_main(&env, "integ-restart", tests, sizeof(tests) / sizeof(tests[0]));
}
