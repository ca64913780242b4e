/* test_integ_localsock.c - the same-host unix socket between the mount and
 * the storage/meta services of a `chainfs up` cluster (transport.h
 * xport_unix):
 * - a second mount started beside the cluster opens its connections over
 *   the unix socket (the services' accepted_local in `chainfs admin
 *   rpc-stats` grows), and what it reads and writes matches a file on the
 *   local disk (the oracle), also as seen through the first mount;
 * - with CFS_NO_LOCAL_SOCKET=1 (the switch `chainfs up --no-local-socket`
 *   sets for the roles it starts) a new mount talks TCP: accepted grows,
 *   accepted_local does not, and the data still matches.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "integ_env.h"
#include "testenv.h"

#define FILE_LEN ((16u << 20) + 12345) /* several chunks over several chains, odd tail */

static struct integ env;

struct counts {
	unsigned long long accepted, local;
};

/* The sum of accepted and accepted_local over the three storage services
 * and meta. The rpc-stats command's own connection is counted too (over the
 * unix socket unless CFS_NO_LOCAL_SOCKET is set in this process). */
static struct counts service_counts(void)
{
	static int n;
	struct counts sum = { 0, 0 };
	char id[128], secret[700];
	integ_conf_get(&env, "cluster_id", id, sizeof(id));
	snprintf(secret, sizeof(secret), "%s/secret", env.data);
	static const char *const keys[] = { "storage1_port", "storage2_port", "storage3_port",
					    "meta_port" };
	for (int i = 0; i < 4; i++) {
		char port[32], addr[64], log[700], line[512];
		integ_conf_get(&env, keys[i], port, sizeof(port));
		snprintf(addr, sizeof(addr), "127.0.0.1:%s", port);
		snprintf(log, sizeof(log), "%s/rpc-stats-%d.out", env.dir, n++);
		char *argv[] = { (char *)testenv_chainfs(), "admin", "rpc-stats", "--addr", addr,
				 "--cluster-id", id, "--secret-file", secret, NULL };
		assert_int_equal(integ_run(argv, NULL, log, 20000), 0);
		FILE *f = fopen(log, "r");
		assert_non_null(f);
		assert_non_null(fgets(line, sizeof(line), f));
		fclose(f);
		unsigned long long a = 0, l = 0;
		const char *pa = strstr(line, "accepted="), *pl = strstr(line, "accepted_local=");
		assert_non_null(pa);
		assert_non_null(pl);
		assert_int_equal(sscanf(pa, "accepted=%llu", &a), 1);
		assert_int_equal(sscanf(pl, "accepted_local=%llu", &l), 1);
		sum.accepted += a;
		sum.local += l;
	}
	return sum;
}

static uint8_t *pattern(unsigned seed)
{
	uint8_t *b = malloc(FILE_LEN);
	for (size_t i = 0; i < FILE_LEN; i++)
		b[i] = (uint8_t)((i * 2654435761u) >> 9 ^ seed ^ (i >> 17));
	return b;
}

/* Writes B to PATH and to the oracle file ORACLE (local disk), fsyncs both. */
static void write_both(const char *path, const char *oracle, const uint8_t *b)
{
	const char *paths[2] = { path, oracle };
	for (int k = 0; k < 2; k++) {
		int fd = open(paths[k], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_true(fd >= 0);
		/* In pieces of 1 MiB + 1: requests that do not line up with chunks. */
		for (size_t off = 0; off < FILE_LEN;) {
			size_t n = FILE_LEN - off < (1u << 20) + 1 ? FILE_LEN - off : (1u << 20) + 1;
			assert_int_equal(pwrite(fd, b + off, n, (off_t)off), (ssize_t)n);
			off += n;
		}
		assert_int_equal(fsync(fd), 0);
		assert_int_equal(close(fd), 0);
	}
}

/* PATH's bytes equal the oracle file's. */
static void same_as_oracle(const char *path, const char *oracle)
{
	uint8_t *a = malloc(FILE_LEN + 1), *b = malloc(FILE_LEN + 1);
	const char *paths[2] = { path, oracle };
	uint8_t *bufs[2] = { a, b };
	for (int k = 0; k < 2; k++) {
		int fd = open(paths[k], O_RDONLY);
		assert_true(fd >= 0);
		size_t got = 0;
		ssize_t n;
		while ((n = read(fd, bufs[k] + got, FILE_LEN + 1 - got)) > 0)
			got += (size_t)n;
		assert_true(n == 0);
		assert_true(got == FILE_LEN);
		close(fd);
	}
	assert_memory_equal(a, b, FILE_LEN);
	free(a);
	free(b);
}

static void run_case(int no_local, const char *tag)
{
	char p1[700], p2[700], o1[700], o2[700], mnt2[600];
	snprintf(o1, sizeof(o1), "%s/oracle-%s-1", env.dir, tag);
	snprintf(o2, sizeof(o2), "%s/oracle-%s-2", env.dir, tag);
	char rel[64];
	snprintf(rel, sizeof(rel), "%s-1", tag);
	integ_path(&env, rel, p1, sizeof(p1));
	/* Written through the first mount: the storage services' chains and
	 * the first mount's connections are all up before the counts. */
	uint8_t *b1 = pattern(no_local ? 11 : 7);
	write_both(p1, o1, b1);
	free(b1);
	if (no_local)
		setenv("CFS_NO_LOCAL_SOCKET", "1", 1); /* this process, the mount and rpc-stats */
	struct counts before = service_counts();
	pid_t m2 = integ_mount2_start(&env, mnt2, sizeof(mnt2));
	/* The second mount reads what the first wrote ... */
	snprintf(p2, sizeof(p2), "%s/%s-1", mnt2, tag);
	same_as_oracle(p2, o1);
	/* ... and writes a file of its own. */
	snprintf(p2, sizeof(p2), "%s/%s-2", mnt2, tag);
	uint8_t *b2 = pattern(no_local ? 13 : 9);
	write_both(p2, o2, b2);
	free(b2);
	same_as_oracle(p2, o2);
	struct counts after = service_counts();
	integ_mount2_stop(&m2);
	unsetenv("CFS_NO_LOCAL_SOCKET");
	/* What the first mount sees of the second one's file. */
	snprintf(rel, sizeof(rel), "%s-2", tag);
	integ_path(&env, rel, p1, sizeof(p1));
	same_as_oracle(p1, o2);
	unsigned long long dl = after.local - before.local, da = after.accepted - before.accepted;
	fprintf(stderr, "%s: services accepted +%llu, of them over the unix socket +%llu\n", tag,
		da, dl);
	/* Four rpc-stats connections of the second count, plus at least meta
	 * and one storage service for the second mount. */
	assert_true(da >= 4 + 2);
	if (no_local)
		assert_true(dl == 0);
	else
		assert_true(dl >= 4 + 2);
}

static void test_mount_uses_local_socket(void **state) { run_case(0, "local"); }
static void test_no_local_socket_is_tcp(void **state) { run_case(1, "tcp"); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mount_uses_local_socket),
		cmocka_unit_test(test_no_local_socket_is_tcp),
	};
	return integ_main(&env, "localsock", tests, sizeof(tests) / sizeof(tests[0]));
}
