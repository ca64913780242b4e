/* test_chunk_alloc.c - the block allocator: fill, free, hole filling,
 * group reuse, punch hole, reference counts, capacity, rebuild. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/chunk_alloc.h"
#include "../lib/testenv.h"

#define GROUP_BYTES (256u * 65536u)
#define TID ((struct chunk_id){ 1, 1 })

static long file_blocks(const char *dir, unsigned cls, unsigned file)
{
	char p[512];
	struct stat st;
	snprintf(p, sizeof(p), "%s/data/c%02u/f%03u", dir, cls, file);
	return stat(p, &st) ? -1 : (long)st.st_blocks;
}

static void test_fill_free_reuse(void **state)
{
	char *dir = testenv_tmpdir("alloc");
	struct chunk_alloc *a;
	assert_int_equal(chunk_alloc_open(dir, 0, &a), 0);
	struct chunk_pos p[300];
	/* Fill group 0 (file 0): all 256 blocks, then the next group stripes
	 * to file 1. */
	for (int i = 0; i < 256; i++) {
		assert_int_equal(chunk_alloc_get(a, 0, TID, &p[i]), 0);
		assert_int_equal(p[i].file, 0);
		assert_int_equal(p[i].block, i);
	}
	assert_int_equal(chunk_alloc_get(a, 0, TID, &p[256]), 0);
	assert_int_equal(p[256].file, 1);
	assert_int_equal(p[256].block, 0);
	assert_true(file_blocks(dir, 0, 0) * 512 >= GROUP_BYTES);
	/* Hole filling: free block 17 of the full group; the fullest group with
	 * a free block is group 0 (255 used) rather than group 1 (1 used). */
	chunk_alloc_release(a, p[17]);
	assert_false(chunk_alloc_is_used(a, p[17]));
	struct chunk_pos q;
	assert_int_equal(chunk_alloc_get(a, 0, TID, &q), 0);
	assert_true(q.file == 0 && q.block == 17);
	/* Emptying group 1 punches it: st_blocks of file 1 drops to the header. */
	long before = file_blocks(dir, 0, 1);
	chunk_alloc_release(a, p[256]);
	long after = file_blocks(dir, 0, 1);
	assert_true(before * 512 >= GROUP_BYTES);
	assert_true(after * 512 < 64 * 1024);
	struct chunk_alloc_stat st;
	chunk_alloc_get_stat(a, &st);
	assert_int_equal(st.punched_groups, 1);
	assert_int_equal(st.groups[0], 1);
	assert_int_equal(st.reserved_bytes, GROUP_BYTES);
	/* The punched group is reused (lowest empty gid) once group 0 is full. */
	assert_int_equal(chunk_alloc_get(a, 0, TID, &q), 0);
	assert_true(q.file == 1 && q.block == 0);
	/* Reserving it again fallocated the space back. */
	assert_true(file_blocks(dir, 0, 1) * 512 >= GROUP_BYTES);
	chunk_alloc_close(a);
	free(dir);
}

/* Idle groups: an emptied group stays reserved (written, so a write into
 * it is an overwrite) and is the next empty group its class takes, up to
 * idle_max; a reservation short of room punches it and goes on. */
static void test_idle_recycle(void **state)
{
	char *dir = testenv_tmpdir("alloc_idle");
	struct chunk_alloc *a;
	struct chunk_alloc_stat st;
	/* Room for two 64 KiB-class groups; one may idle. */
	assert_int_equal(chunk_alloc_open(dir, 2 * GROUP_BYTES, &a), 0);
	chunk_alloc_set_idle_max(a, GROUP_BYTES);
	struct chunk_pos p[256], q;
	for (int i = 0; i < 256; i++)
		assert_int_equal(chunk_alloc_get(a, 0, TID, &p[i]), 0);
	assert_int_equal(chunk_alloc_get(a, 0, TID, &q), 0); /* group 1 (file 1) */
	assert_int_equal(q.file, 1);
	long before = file_blocks(dir, 0, 1);
	chunk_alloc_release(a, q);
	/* Kept: not punched, still reserved, counted idle. */
	assert_int_equal(file_blocks(dir, 0, 1), before);
	chunk_alloc_get_stat(a, &st);
	assert_int_equal(st.punched_groups, 0);
	assert_int_equal(st.groups[0], 1);
	assert_int_equal(st.reserved_bytes, 2 * GROUP_BYTES);
	assert_int_equal(st.idle_bytes, GROUP_BYTES);
	/* Emptying group 0 too: over idle_max, so that one is punched. */
	for (int i = 0; i < 256; i++)
		chunk_alloc_release(a, p[i]);
	chunk_alloc_get_stat(a, &st);
	assert_int_equal(st.punched_groups, 1);
	assert_int_equal(st.idle_bytes, GROUP_BYTES);
	assert_true(file_blocks(dir, 0, 0) * 512 < 64 * 1024);
	/* The idle group is taken before the lower, punched gid 0. */
	assert_int_equal(chunk_alloc_get(a, 0, TID, &q), 0);
	assert_true(q.file == 1 && q.block == 0);
	chunk_alloc_get_stat(a, &st);
	assert_int_equal(st.recycled_groups, 1);
	assert_int_equal(st.idle_bytes, 0);
	assert_int_equal(st.reserved_bytes, GROUP_BYTES);
	/* Idle again; then another class needs two groups of room: the idle
	 * one is punched so the reservation fits under the capacity. */
	chunk_alloc_release(a, q);
	chunk_alloc_get_stat(a, &st);
	assert_int_equal(st.idle_bytes, GROUP_BYTES);
	assert_int_equal(chunk_alloc_get(a, 1, TID, &q), 0); /* 32 MiB group */
	chunk_alloc_get_stat(a, &st);
	assert_int_equal(st.idle_bytes, 0);
	assert_int_equal(st.punched_groups, 2);
	assert_int_equal(st.reserved_bytes, 2 * GROUP_BYTES);
	chunk_alloc_close(a);
	free(dir);
}

static void test_refs(void **state)
{
	char *dir = testenv_tmpdir("alloc_refs");
	struct chunk_alloc *a;
	assert_int_equal(chunk_alloc_open(dir, 0, &a), 0);
	struct chunk_pos p, q;
	assert_int_equal(chunk_alloc_get(a, 2, TID, &p), 0);
	chunk_alloc_ref(a, p);
	chunk_alloc_release(a, p);
	/* Still pinned by the reader: not reusable. */
	assert_true(chunk_alloc_is_used(a, p));
	assert_int_equal(chunk_alloc_get(a, 2, TID, &q), 0);
	assert_false(q.block == p.block && q.file == p.file);
	chunk_alloc_unref(a, p);
	assert_false(chunk_alloc_is_used(a, p));
	chunk_alloc_close(a);
	free(dir);
}

static void test_capacity_and_large(void **state)
{
	char *dir = testenv_tmpdir("alloc_cap");
	struct chunk_alloc *a;
	/* Room for one 64 KiB group plus two 8 MiB blocks. */
	assert_int_equal(chunk_alloc_open(dir, GROUP_BYTES + (16u << 20), &a), 0);
	struct chunk_pos p, big[3];
	assert_int_equal(chunk_alloc_get(a, 0, TID, &p), 0);
	assert_int_equal(chunk_alloc_get(a, 7, TID, &big[0]), 0);
	assert_int_equal(chunk_alloc_get(a, 7, TID, &big[1]), 0);
	assert_int_equal(chunk_alloc_get(a, 7, TID, &big[2]), -ENOSPC);
	assert_int_equal(chunk_alloc_get(a, 1, TID, &p), -ENOSPC);
	/* Freeing a large block punches just that block and gives space back. */
	chunk_alloc_release(a, big[0]);
	assert_int_equal(chunk_alloc_get(a, 7, TID, &big[2]), 0);
	chunk_alloc_close(a);
	free(dir);
}

/* Disk-full rule: a group that does not fit whole is reserved block by
 * block; keep_free refuses a reservation that would eat into the floor. */
static void test_per_block_and_floor(void **state)
{
	char *dir = testenv_tmpdir("alloc_perblock");
	struct chunk_alloc *a;
	struct chunk_alloc_stat st;
	/* Half a 64 KiB-class group: 128 blocks, block by block. */
	assert_int_equal(chunk_alloc_open(dir, GROUP_BYTES / 2, &a), 0);
	struct chunk_pos p[129];
	for (int i = 0; i < 128; i++)
		assert_int_equal(chunk_alloc_get(a, 0, TID, &p[i]), 0);
	chunk_alloc_get_stat(a, &st);
	assert_int_equal(st.reserved_bytes, GROUP_BYTES / 2);
	assert_int_equal(chunk_alloc_get(a, 0, TID, &p[128]), -ENOSPC);
	chunk_alloc_release(a, p[5]);
	chunk_alloc_get_stat(a, &st);
	assert_int_equal(st.reserved_bytes, GROUP_BYTES / 2 - (64u << 10));
	assert_int_equal(chunk_alloc_get(a, 0, TID, &p[5]), 0);
	for (int i = 0; i < 128; i++)
		chunk_alloc_release(a, p[i]);
	chunk_alloc_get_stat(a, &st);
	assert_int_equal(st.reserved_bytes, 0);
	/* A floor larger than any filesystem: no new reservation at all. */
	struct chunk_pos q;
	assert_int_equal(chunk_alloc_get_keep(a, 1, TID, UINT64_C(1) << 62, &q), -ENOSPC);
	assert_int_equal(chunk_alloc_get_keep(a, 1, TID, 0, &q), 0);
	chunk_alloc_close(a);
	free(dir);
}

static void test_rebuild(void **state)
{
	char *dir = testenv_tmpdir("alloc_rebuild");
	struct chunk_alloc *a;
	assert_int_equal(chunk_alloc_open(dir, 0, &a), 0);
	struct chunk_pos p[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(chunk_alloc_get(a, 0, TID, &p[i]), 0);
	chunk_alloc_close(a);
	/* Only p[1] is "committed": the rebuild marks it; a second claim fails;
	 * the rest of the group is free; an unknown group is punched. */
	assert_int_equal(chunk_alloc_open(dir, 0, &a), 0);
	assert_int_equal(chunk_alloc_mark(a, p[1], (struct chunk_id){ 1, 1 }), 0);
	assert_int_equal(chunk_alloc_mark(a, p[1], (struct chunk_id){ 1, 2 }), -EEXIST);
	assert_int_equal(chunk_alloc_open_done(a), 0);
	assert_int_equal(chunk_alloc_used_total(a), 1);
	assert_true(chunk_alloc_owns(a, p[1], (struct chunk_id){ 1, 1 }));
	assert_false(chunk_alloc_owns(a, p[1], (struct chunk_id){ 1, 2 }));
	assert_false(chunk_alloc_owns(a, p[0], (struct chunk_id){ 1, 1 }));
	struct chunk_pos q;
	assert_int_equal(chunk_alloc_get(a, 0, TID, &q), 0);
	assert_int_equal(q.block, 0);
	chunk_alloc_close(a);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fill_free_reuse), cmocka_unit_test(test_idle_recycle),
		cmocka_unit_test(test_refs),
		cmocka_unit_test(test_capacity_and_large), cmocka_unit_test(test_rebuild),
		cmocka_unit_test(test_per_block_and_floor),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
}
