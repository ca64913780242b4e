/* test_integ_fsck.c - `chainfs fsck` on a real cluster.
 *
 * - Files written through the mount (several chunks each, one removed):
 *   fsck exits 0 on the running cluster and again after `chainfs down`,
 *   counting every chunk once with three agreeing copies.
 * - Damage made by hand in the stopped cluster's chunk stores: one target
 *   loses a chunk record, another holds a copy with a different CRC. fsck
 *   exits 1 and names both as under-replicated and divergent.
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
#include "storage/chunk_store.h"
#include "testenv.h"

static struct integ env;

/* Runs `chainfs fsck --dir DATA`; its output into OUT. Returns the status. */
static int run_fsck(char *out, size_t cap)
{
	char log[600];
	snprintf(log, sizeof(log), "%s/fsck.out", env.dir);
	unlink(log); /* integ_run appends */
	char *argv[] = {(char *)testenv_chainfs(), "fsck", "--dir", env.data, NULL};
	int rc = integ_run(argv, NULL, log, 120000);
	FILE *f = fopen(log, "r");
	assert_non_null(f);
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = 0;
	fclose(f);
	print_message("%s", out);
	return rc;
}

static uint64_t field(const char *out, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), " %s=", key);
	/* From the last pass's summary: a pass that found something (a GC
	 * caught half done, its WARN lines name copies=...) is rerun after 1 s
	 * and both passes are in OUT. */
	const char *last = NULL;
	for (const char *q = strstr(out, "chunks targets="); q; q = strstr(q + 1, "chunks targets="))
		last = q;
	if (last)
		out = last;
	const char *p = strstr(out, pat);
	assert_non_null(p);
	return strtoull(p + strlen(pat), NULL, 10);
}

static void write_file(const char *rel, size_t len, unsigned seed)
{
	char path[600];
	integ_path(&env, rel, path, sizeof(path));
	char *b = malloc(len);
	assert_non_null(b);
	for (size_t i = 0; i < len; i++)
		b[i] = (char)(seed * 131 + i * 7);
	integ_write_file(path, b, len);
	free(b);
}

static int setup(void **state)
{
	(void)state;
	integ_init(&env, "fsck");
	integ_up(&env);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	integ_teardown(&env);
	return 0;
}

static void test_clean(void **state)
{
	(void)state;
	char out[4096], path[600];
	integ_path(&env, "d", path, sizeof(path));
	assert_int_equal(mkdir(path, 0755), 0);
	integ_path(&env, "d/sub", path, sizeof(path));
	assert_int_equal(mkdir(path, 0755), 0);
	write_file("d/a", 3u << 20, 1);         /* 3 chunks */
	write_file("d/sub/b", (5u << 20) + 7, 2); /* 6 chunks */
	write_file("gone", 2u << 20, 3);
	integ_path(&env, "gone", path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	/* While GC removes the unlinked file's chunks (being_removed), some of
	 * their replicas are gone and others not: the copy count below holds
	 * only once it is done, so wait for that (GC runs within seconds). */
	uint64_t deadline = clock_mono_ms() + 30000;
	for (;;) {
		assert_int_equal(run_fsck(out, sizeof(out)), 0);
		assert_non_null(strstr(out, "fsck: clean"));
		if (field(out, "being_removed") == 0 || clock_mono_ms() >= deadline)
			break;
		clock_sleep_ms(500);
	}
	assert_int_equal(field(out, "being_removed"), 0);
	/* the removed file's chunks may still wait for GC: at least a and b */
	assert_true(field(out, "chunks") >= 9);
	assert_int_equal(field(out, "copies"), 3 * field(out, "chunks"));
	assert_int_equal(field(out, "dir_nlink_mismatch"), 0);
}

struct first {
	struct chunk_id id;
	int found;
	struct chunk_id skip;
};

static int first_cb(void *arg, struct chunk_id id, const struct chunk_meta *m, int err)
{
	(void)m;
	struct first *f = arg;
	if (err || (id.ino == f->skip.ino && id.idx == f->skip.idx))
		return 0;
	f->id = id;
	f->found = 1;
	return 1;
}

static struct chunk_store *open_target(const char *role, const char *target)
{
	char path[700];
	struct chunk_store *s;
	snprintf(path, sizeof(path), "%s/%s/%s/meta", env.data, role, target);
	assert_int_equal(chunk_store_open(path, UINT64_C(64) << 30, 1, &s), 0);
	return s;
}

static struct chunk_id first_chunk(struct chunk_store *s, struct chunk_id skip)
{
	struct first f = { .skip = skip };
	chunk_store_scan(s, (struct chunk_id){ 0, 0 }, (struct chunk_id){ UINT64_MAX, UINT32_MAX },
			 first_cb, &f);
	assert_true(f.found);
	return f.id;
}

static void test_damage(void **state)
{
	(void)state;
	char out[4096];
	integ_down(&env);
	assert_int_equal(run_fsck(out, sizeof(out)), 0);
	assert_non_null(strstr(out, "fsck: clean"));

	/* storage1/target1 forgets one chunk */
	struct chunk_store *s = open_target("storage1", "target1");
	struct chunk_id lost = first_chunk(s, (struct chunk_id){ 0, UINT32_MAX });
	struct chunk_batch *b;
	assert_int_equal(chunk_store_batch_begin(s, &b), 0);
	assert_int_equal(chunk_store_batch_del(b, lost), 0);
	assert_int_equal(chunk_store_batch_commit(b), 0);
	chunk_store_close(s);

	/* storage2/target2 holds another chunk with a different CRC */
	s = open_target("storage2", "target2");
	struct chunk_id bent = first_chunk(s, lost);
	struct chunk_meta m;
	assert_int_equal(chunk_store_get(s, bent, &m), 0);
	m.crc ^= 1;
	assert_int_equal(chunk_store_batch_begin(s, &b), 0);
	assert_int_equal(chunk_store_batch_put(b, bent, &m), 0);
	assert_int_equal(chunk_store_batch_commit(b), 0);
	chunk_meta_fini(&m);
	chunk_store_close(s);

	assert_int_equal(run_fsck(out, sizeof(out)), 1);
	assert_non_null(strstr(out, "PROBLEMS FOUND"));
	assert_int_equal(field(out, "under_replicated"), 1);
	assert_int_equal(field(out, "divergent"), 1);
	assert_int_equal(field(out, "orphan_chunks"), 0);
}

int main(void)
{
	integ_require_fuse();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_damage),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
