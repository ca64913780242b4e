/* test_integ_corrupt.c - a corrupted replica (issue 16, "fix first" #3).
 *
 * Regression test. With 8 bytes flipped in one replica's chunk data file
 * the storage service caught the bad CRC, but the client returned EIO for
 * about a third of whole-file reads instead of reading a good replica, and
 * nothing repaired the bad copy.
 *
 * test_one_replica_corrupt: a 2 MiB file with a unique marker is written
 * through the mount; the test finds the marker in one storage target's data
 * files (a scan of DATA/storageN/, the chunk engine's block files) and
 * flips 8 bytes there. 40 whole-file reads through the mount must all
 * succeed with the right bytes; a storage log must name the corrupt chunk
 * and then report it repaired from another replica; 40 more reads after
 * that must succeed without any new corruption report (the repaired
 * replica now passes its CRC check).
 *
 * test_each_service_finds_its_copy: three files, each with the marker's
 * neighbourhood flipped in the copy of a different storage service (so
 * whatever the chains' order, two are not the first replica). The mount
 * reads them short-circuit from the services' block files (all three
 * services are on this host), spread over the replicas; a page CRC
 * mismatch sends the read to the same target over RPC. Every read must
 * return the right bytes; each service must log its own copy's chunk
 * ("corrupt chunk: ... ino=I idx=0") and then repair it; after that, as
 * many reads again (reaching every copy again) make no new report.
 *
 * test_every_replica_corrupt: the same bytes flipped in all three replicas
 * of another file: a read fails with EIO (not a hang, not wrong bytes), and
 * the mount log names the inode.
 *
 * The mount reads short-circuit (its default), whose replica choice for a
 * chunk moves on to the next replica after every 64 reads of the chunk
 * (storage_client.c direct_pick): the reads below go on until the
 * corrupt copy was reported (at most READS_MAX), and after the repair
 * READS_AGAIN more read every copy again.
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

#include "common/clock.h"
#include "integ_env.h"
#include "testenv.h"

#define FILE_LEN ((size_t)2 << 20)
/* Whole-file reads: enough for 3 x 64 reads of each chunk, twice over. */
#define READS_MAX 400
#define READS_AGAIN 200

static struct integ env;

static void fill(uint8_t *buf, size_t n, const char *marker)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(i * 31 + (i >> 9));
	memcpy(buf + 4096, marker, strlen(marker));
}

/* 0 when PATH reads back as WANT; -errno of a failed read; 1 on a mismatch. */
static int read_file(const char *path, const uint8_t *want, size_t n)
{
	uint8_t *got = malloc(n + 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(got);
		return -errno;
	}
	size_t have = 0;
	int rc = 0;
	while (have <= n) {
		ssize_t r = read(fd, got + have, n + 1 - have);
		if (r < 0) {
			rc = -errno;
			break;
		}
		if (r == 0)
			break;
		have += (size_t)r;
	}
	close(fd);
	if (!rc && (have != n || memcmp(got, want, n)))
		rc = 1;
	free(got);
	return rc;
}

/* Lines of storage service S's log (1..3; 0: all) holding NEEDLE and,
 * when not NULL, NEEDLE2. */
static int count_in_log(int only, const char *needle, const char *needle2)
{
	int n = 0;
	for (int s = 1; s <= 3; s++) {
		char path[700], line[2048];
		if (only && s != only)
			continue;
		snprintf(path, sizeof(path), "%s/logs/storage%d.log", env.data, s);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			n += strstr(line, needle) && (!needle2 || strstr(line, needle2));
		fclose(f);
	}
	return n;
}

static int count_in_storage_logs(const char *needle)
{
	return count_in_log(0, needle, NULL);
}

static int repaired(void *arg)
{
	return count_in_storage_logs("repaired chunk:") > 0;
}

/* Writes file NAME (its mount path into PATH, 1100 bytes) of FILE_LEN
 * pattern bytes with a fresh marker "CFS-CORRUPT-TAG-..." (into MARKER,
 * 64 bytes) at 4096; returns the bytes (the caller frees them). */
static uint8_t *marked_file(const char *tag, const char *name, char *marker, char *path)
{
	uint8_t *buf = malloc(FILE_LEN);
	assert_non_null(buf);
	snprintf(marker, 64, "CFS-CORRUPT-%s-%08lx", tag, (unsigned long)random());
	fill(buf, FILE_LEN, marker);
	integ_path(&env, name, path, 1100);
	integ_write_file(path, buf, FILE_LEN);
	return buf;
}

static void test_one_replica_corrupt(void **state)
{
	char path[1100], marker[64];
	uint8_t *buf = marked_file("ONE", "corrupt-one", marker, path);
	assert_int_equal(integ_flip_marker(&env, marker, 1), 1);

	int bad = 0, n = 0;
	for (; n < READS_MAX && (n < 40 || !count_in_storage_logs("corrupt chunk:")); n++) {
		int rc = read_file(path, buf, FILE_LEN);
		if (rc)
			fprintf(stderr, "read %d: %d\n", n, rc);
		bad += rc != 0;
	}
	fprintf(stderr, "one replica: %d reads until reported\n", n);
	assert_int_equal(bad, 0);
	/* The corrupt replica was read (the service caught it) and repaired. */
	assert_true(count_in_storage_logs("corrupt chunk:") >= 1);
	assert_true(testenv_wait(repaired, NULL, 60000));
	int seen = count_in_storage_logs("corrupt chunk:");
	for (int i = 0; i < READS_AGAIN; i++)
		assert_int_equal(read_file(path, buf, FILE_LEN), 0);
	assert_int_equal(count_in_storage_logs("corrupt chunk:"), seen);
	assert_int_equal(count_in_storage_logs("NOT repaired"), 0);
	free(buf);
}

struct own_copy {
	char path[1100], marker[64], ino_s[48]; /* ino_s: "ino=I idx=0" */
	uint8_t *buf;
};

static int each_repaired(void *arg)
{
	struct own_copy *f = arg;
	for (int s = 1; s <= 3; s++)
		if (!count_in_log(s, "repaired chunk:", f[s - 1].ino_s))
			return 0;
	return 1;
}

static void test_each_service_finds_its_copy(void **state)
{
	struct own_copy f[3];
	for (int s = 1; s <= 3; s++) {
		struct own_copy *x = &f[s - 1];
		char tag[16], rel[64];
		snprintf(tag, sizeof(tag), "OWN%d", s);
		snprintf(rel, sizeof(rel), "corrupt-own-%d", s);
		x->buf = marked_file(tag, rel, x->marker, x->path);
		struct stat st;
		assert_int_equal(stat(x->path, &st), 0);
		snprintf(x->ino_s, sizeof(x->ino_s), "ino=%llu idx=0",
		         (unsigned long long)st.st_ino);
		/* Storage service S's copy only. */
		assert_int_equal(integ_flip_copy(&env, s, x->marker), 1);
	}
	int bad = 0, round = 0, all = 0;
	for (; round < READS_MAX && !all; round++) {
		all = 1;
		for (int s = 0; s < 3; s++) {
			if (count_in_log(s + 1, "corrupt chunk:", f[s].ino_s))
				continue;
			all = 0;
			int rc = read_file(f[s].path, f[s].buf, FILE_LEN);
			if (rc)
				fprintf(stderr, "round %d file %d: %d\n", round, s + 1, rc);
			bad += rc != 0;
		}
	}
	fprintf(stderr, "each service: %d rounds until all reported\n", round);
	assert_int_equal(bad, 0);
	/* Each service found its own copy bad (the mount's short-circuit read
	 * sent the read to it) and repairs it; no service reported another's. */
	for (int s = 1; s <= 3; s++) {
		for (int o = 1; o <= 3; o++) {
			int n = count_in_log(s, "corrupt chunk:", f[o - 1].ino_s);
			if (o == s)
				assert_true(n >= 1);
			else
				assert_int_equal(n, 0);
		}
	}
	assert_true(testenv_wait(each_repaired, f, 60000));
	int seen = count_in_storage_logs("corrupt chunk:");
	for (int i = 0; i < READS_AGAIN; i++)
		for (int s = 0; s < 3; s++)
			assert_int_equal(read_file(f[s].path, f[s].buf, FILE_LEN), 0);
	/* The repaired copies pass: reads reaching them report nothing. */
	assert_int_equal(count_in_storage_logs("corrupt chunk:"), seen);
	assert_int_equal(count_in_storage_logs("NOT repaired"), 0);
	for (int s = 0; s < 3; s++) {
		assert_int_equal(unlink(f[s].path), 0);
		free(f[s].buf);
	}
}

static void test_every_replica_corrupt(void **state)
{
	char path[1100], marker[64];
	uint8_t *buf = marked_file("ALL", "corrupt-all", marker, path);
	assert_int_equal(integ_flip_marker(&env, marker, 3), 3);
	uint64_t t0 = clock_mono_ms();
	assert_int_equal(read_file(path, buf, FILE_LEN), -EIO);
	assert_true(clock_mono_ms() - t0 < 30000);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	char needle[96];
	snprintf(needle, sizeof(needle), "corrupt on every replica: ino=%llu",
	         (unsigned long long)st.st_ino);
	char mlog[700];
	snprintf(mlog, sizeof(mlog), "%s/logs/mount.log", env.data);
	assert_true(testenv_file_has(mlog, needle));
	/* Nothing good to repair from: the services say so. */
	assert_int_equal(unlink(path), 0);
	free(buf);
}

int main(void)
{
	srandom((unsigned)getpid());
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_replica_corrupt),
	    cmocka_unit_test(test_each_service_finds_its_copy),
	    cmocka_unit_test(test_every_replica_corrupt),
	};
	return integ_main(&env, "integ-corrupt", tests, sizeof(tests) / sizeof(tests[0]));
}
