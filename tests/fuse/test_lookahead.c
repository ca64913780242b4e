/* test_lookahead.c - when the lookup-ahead asks meta for a batch, and how
 * large (fuse/lookahead.h lookahead_want), and where it remembers the
 * directories its batches answered (lookahead_dir_seen / _where).
 *
 * - Refill-ahead: a lookup answered past the middle of a batch that does
 *   not end its directory claims, once, the fetch of the entries after
 *   the batch; that next batch answers the names the current one does
 *   not hold and then takes its place, only while this mount changed
 *   nothing since the fetch began, and not after a batch was put for the
 *   directory since the claim; and not when the walk is too slow for the
 *   next batch to be used within its bound (the TTL, or the bytes' own).
 * - Walk-ahead: once a walk is seen in a directory (a subdirectory's
 *   first miss fetched at once), a subdirectory answered from its batch
 *   claims the next subdirectories without a batch for background
 *   fetches, each once; a miss in a claimed one waits for its fetch, and
 *   only while it is on its way.
 * - A run of ascending misses in one directory fetches from its second
 *   miss on: LOOKAHEAD_BATCH entries the first time, LOOKAHEAD_BATCH_MAX
 *   for every later fetch of the same run (a scan of a big directory
 *   costs half the round trips); a miss out of order starts a new run.
 * - The first miss of a run in a directory that its parent's batch
 *   answered a moment ago fetches at once (a walk over many directories),
 *   LOOKAHEAD_BATCH_MAX entries (a walk reads whole directories: one
 *   fetch for a directory of 200), once per such answer; in any other
 *   directory it does not.
 * - A live batch says "absent" only for names within its span.
 * - An unlink this mount made takes the name out of its directory's
 *   batch (absent from then on, the others still answer) and drops the
 *   batches that hold the directory (its parent's), and only those; an
 *   unlink of a name no batch holds drops them all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "fuse/lookahead.h"

/* Adds to B the entry NAME, inode INO: a directory when DIR, else a file,
 * with inline bytes D when D is not NULL. */
static void add_ent(struct lookahead_batch *b, uint64_t ino, const char *name, int dir,
                    const struct meta_idata_out *d)
{
	static struct meta_inode in;
	struct meta_dirent de;
	memset(&de, 0, sizeof(de));
	de.ino = ino;
	de.name_len = (uint8_t)snprintf(de.name, sizeof(de.name), "%s", name);
	memset(&in, 0, sizeof(in));
	in.ino = ino;
	in.type = dir ? META_T_DIR : META_T_FILE;
	in.nlink = dir ? 2 : 1;
	in.has_layout = d != NULL;
	if (d)
		assert_int_equal(lookahead_batch_add_idata(b, &de, &in, d), 0);
	else
		assert_int_equal(lookahead_batch_add(b, &de, &in), 0);
}

/* A batch of PARENT with names "f%03d" FIRST..FIRST+N-1 (inodes INO0 +
 * i; DIRS: directories), fetched from change count EPOCH, ending the
 * directory when EOF; kept as PARENT's next batch when NEXT; read AGE_NS
 * ago. */
static void put_range(lookahead *la, uint64_t parent, uint64_t ino0, int first, int n, int dirs,
                      int eof, uint64_t epoch, int next, uint64_t age_ns)
{
	char name[16];
	struct lookahead_batch *b = lookahead_batch_new();
	assert_non_null(b);
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%03d", first + i);
		add_ent(b, ino0 + (uint64_t)i, name, dirs, NULL);
	}
	uint64_t read_ns = clock_mono_ns() - age_ns;
	if (next)
		lookahead_put_next(la, parent, b, 1, epoch, read_ns, eof);
	else
		lookahead_put(la, parent, b, 1, epoch, read_ns, eof);
}

/* A batch of directory PARENT holding NAMES "f000".. with inodes
 * INO0 + i; DIRS: the entries are directories. */
static void put_batch(lookahead *la, uint64_t parent, uint64_t ino0, int n, int dirs)
{
	put_range(la, parent, ino0, 0, n, dirs, 1, lookahead_epoch(la), 0, 0);
}

/* PARENT's batch answers NAME with inode INO. */
static void assert_answers(lookahead *la, uint64_t parent, const char *name, uint64_t ino)
{
	struct meta_inode got;
	uint64_t gen, read_ns;
	assert_int_equal(lookahead_get(la, parent, name, &got, &gen, &read_ns), 1);
	assert_int_equal(got.ino, ino);
}

/* PARENT's batches do not answer NAME (the lookup asks meta). */
static void assert_no_answer(lookahead *la, uint64_t parent, const char *name)
{
	struct meta_inode got;
	uint64_t gen, read_ns;
	assert_int_equal(lookahead_get(la, parent, name, &got, &gen, &read_ns), 0);
}

static void test_run_grows(void **state)
{
	(void)state;
	lookahead *la;
	assert_int_equal(lookahead_new(1000000000ull, &la), 0);
	assert_int_equal(lookahead_want(la, 10, "f001"), 0); /* one miss: no run yet */
	assert_int_equal(lookahead_want(la, 10, "f002"), LOOKAHEAD_BATCH);
	assert_int_equal(lookahead_want(la, 10, "f130"), LOOKAHEAD_BATCH_MAX);
	assert_int_equal(lookahead_want(la, 10, "f400"), LOOKAHEAD_BATCH_MAX);
	/* out of order: the run ends, the next one starts small again */
	assert_int_equal(lookahead_want(la, 10, "f000"), 0);
	assert_int_equal(lookahead_want(la, 10, "f001"), LOOKAHEAD_BATCH);
	/* another directory has runs of its own */
	assert_int_equal(lookahead_want(la, 11, "a"), 0);
	assert_int_equal(lookahead_want(la, 11, "b"), LOOKAHEAD_BATCH);
	assert_true(LOOKAHEAD_BATCH_MAX > LOOKAHEAD_BATCH);
	assert_true(LOOKAHEAD_BATCH_MAX <= META_PLUS_MAX);
	lookahead_disable(la);
	assert_int_equal(lookahead_want(la, 10, "f900"), 0);
	lookahead_free(la);
}

static void test_scanned_dir_fetches_at_first_miss(void **state)
{
	(void)state;
	lookahead *la;
	char name[META_NAME_MAX + 1];
	uint64_t parent = 0;
	assert_int_equal(lookahead_new(1000000000ull, &la), 0);
	assert_int_equal(lookahead_dir_where(la, 30, &parent, name), 0);
	/* d30 was answered from its parent's (inode 1) batch: a walk */
	lookahead_dir_seen(la, 1, "d30", 30);
	assert_int_equal(lookahead_dir_where(la, 30, &parent, name), 1);
	assert_int_equal(parent, 1);
	assert_string_equal(name, "d30");
	assert_int_equal(lookahead_want(la, 30, "f000"), LOOKAHEAD_BATCH_MAX);
	/* the run goes on as any run */
	assert_int_equal(lookahead_want(la, 30, "f200"), LOOKAHEAD_BATCH_MAX);
	/* once per answer: a run started again in it waits for its second miss */
	assert_int_equal(lookahead_want(la, 30, "f000"), 0);
	assert_int_equal(lookahead_want(la, 30, "f001"), LOOKAHEAD_BATCH);
	/* answered again (the walk comes back after the kernel dropped its
	 * names): a run that starts over fetches at once again */
	lookahead_dir_seen(la, 1, "d30", 30);
	assert_int_equal(lookahead_want(la, 30, "f000"), LOOKAHEAD_BATCH_MAX);
	/* a directory no batch answered: its first miss asks for one name */
	assert_int_equal(lookahead_want(la, 31, "f000"), 0);
	assert_int_equal(lookahead_dir_where(la, 31, &parent, name), 0);
	/* the place is a hint kept per inode: seen again elsewhere, it moves */
	lookahead_dir_seen(la, 2, "e30", 30);
	assert_int_equal(lookahead_dir_where(la, 30, &parent, name), 1);
	assert_int_equal(parent, 2);
	assert_string_equal(name, "e30");
	lookahead_free(la);
}

/* A live batch answers "absent" only for names it spans: the end of an
 * earlier walk (a batch from f700 on, to the end of the directory) does
 * not stop a new walk from f000 from fetching. */
static void test_batch_spans_only_its_names(void **state)
{
	(void)state;
	lookahead *la;
	assert_int_equal(lookahead_new(1000000000ull, &la), 0);
	put_range(la, 40, 1700, 700, 10, 0, 1, lookahead_epoch(la), 0, 0); /* f700..f709 */
	assert_answers(la, 40, "f705", 1705);
	assert_int_equal(lookahead_want(la, 40, "f000"), 0);
	assert_int_equal(lookahead_want(la, 40, "f001"), LOOKAHEAD_BATCH);
	/* inside the batch's span, or past its end with eof: known absent */
	assert_int_equal(lookahead_want(la, 40, "f7050"), 0);
	assert_int_equal(lookahead_want(la, 40, "f800"), 0);
	lookahead_free(la);
}

/* Batches of three directories asked in turn, in order, backwards, again
 * and around an unlink that moved the entries: every answer is the named
 * entry's (lookahead_get tries the entry after its last answer first). */
static void test_interleaved_walks_answer_their_names(void **state)
{
	(void)state;
	lookahead *la;
	assert_int_equal(lookahead_new(10000000000ull, &la), 0);
	for (uint64_t d = 50; d < 53; d++)
		put_batch(la, d, d * 1000, 20, 0);
	struct meta_inode got;
	uint64_t gen, read_ns;
	char name[16];
	for (int pass = 0; pass < 2; pass++)
		for (int k = 0; k < 20; k++) {
			int i = pass ? 19 - k : k;
			snprintf(name, sizeof(name), "f%03d", i);
			for (uint64_t d = 50; d < 53; d++) {
				assert_answers(la, d, name, d * 1000 + (uint64_t)i);
			}
		}
	assert_no_answer(la, 50, "f0055");
	assert_int_equal(lookahead_get(la, 50, "f004", &got, &gen, &read_ns), 1);
	/* f005 leaves batch 50: the entry after the last answer is now f006 */
	lookahead_unlinked(la, 50, "f005");
	assert_no_answer(la, 50, "f005");
	assert_answers(la, 50, "f006", 50006);
	assert_answers(la, 50, "f007", 50007);
	assert_answers(la, 50, "f019", 50019);
	assert_no_answer(la, 50, "f020");
	lookahead_free(la);
}

static void test_unlink_drops_only_holders(void **state)
{
	(void)state;
	lookahead *la;
	assert_int_equal(lookahead_new(10000000000ull, &la), 0);
	struct meta_inode got;
	uint64_t gen, read_ns;
	char name[16];
	/* directory 1 holds directories 50..52 (f000..f002); each holds 20 files */
	put_batch(la, 1, 50, 3, 1);
	for (uint64_t d = 50; d < 53; d++)
		put_batch(la, d, d * 1000, 20, 0);
	/* rm in name order: each name leaves its batch, the rest answer */
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "f%03d", i);
		lookahead_unlinked(la, 51, name);
		assert_no_answer(la, 51, name);
		if (i < 19) {
			snprintf(name, sizeof(name), "f%03d", i + 1);
			assert_answers(la, 51, name, 51000 + (uint64_t)i + 1);
		}
		/* directory 51 changed: the batch of 1 holding it is gone ... */
		assert_no_answer(la, 1, "f000");
		/* ... and the other directories' batches answer on */
		assert_answers(la, 50, "f007", 50007);
		assert_int_equal(lookahead_get(la, 52, "f019", &got, &gen, &read_ns), 1);
	}
	/* a batch with no directories in it is not the parent's: it stays */
	put_batch(la, 1, 50, 3, 1);
	put_batch(la, 7, 70, 3, 1); /* holds directories, not 52 */
	lookahead_unlinked(la, 52, "f003");
	assert_no_answer(la, 1, "f000");
	assert_int_equal(lookahead_get(la, 7, "f001", &got, &gen, &read_ns), 1);
	assert_int_equal(lookahead_get(la, 52, "f004", &got, &gen, &read_ns), 1);
	/* a name already gone (made again elsewhere, unlinked again here):
	 * which inode went is not known: every batch goes */
	lookahead_unlinked(la, 52, "f003");
	assert_no_answer(la, 52, "f005");
	assert_no_answer(la, 50, "f008");
	assert_no_answer(la, 7, "f002");
	lookahead_free(la);
}

/* Names too long to be kept in the entry (LA_SNAME) answer as short ones. */
static void test_long_names_answer(void **state)
{
	(void)state;
	lookahead *la;
	assert_int_equal(lookahead_new(10000000000ull, &la), 0);
	struct lookahead_batch *b = lookahead_batch_new();
	assert_non_null(b);
	char name[64];
	for (int i = 0; i < 30; i++) {
		/* 22..51 bytes: both sides of the inline limit */
		snprintf(name, sizeof(name), "%02d%0*d", i, 20 + i, 7);
		add_ent(b, 900 + (uint64_t)i, name, 0, NULL);
	}
	lookahead_put(la, 9, b, 1, lookahead_epoch(la), clock_mono_ns(), 1);
	for (int i = 0; i < 30; i++) {
		snprintf(name, sizeof(name), "%02d%0*d", i, 20 + i, 7);
		assert_answers(la, 9, name, 900 + (uint64_t)i);
		/* one byte short of the next name: absent */
		snprintf(name, sizeof(name), "%02d%0*d", i + 1, 20 + i, 7);
		assert_no_answer(la, 9, name);
	}
	lookahead_free(la);
}

static void test_walk_ahead_claims_next_dirs_once(void **state)
{
	(void)state;
	lookahead *la;
	uint64_t out[LOOKAHEAD_AHEAD];
	assert_int_equal(lookahead_new(10000000000ull, &la), 0);
	put_batch(la, 1, 100, 10, 1); /* f000..f009: directories 100..109 */
	/* no walk seen in 1 yet: nothing is claimed */
	assert_int_equal(lookahead_walk_ahead(la, 1, "f000", out, LOOKAHEAD_AHEAD), 0);
	/* f000 (100) was answered from 1's batch and its first miss fetched
	 * at once: a walk */
	lookahead_dir_seen(la, 1, "f000", 100);
	assert_int_equal(lookahead_want(la, 100, "a"), LOOKAHEAD_BATCH_MAX);
	assert_int_equal(lookahead_walk_ahead(la, 1, "f000", out, LOOKAHEAD_AHEAD),
	                 LOOKAHEAD_AHEAD);
	for (int i = 0; i < LOOKAHEAD_AHEAD; i++)
		assert_int_equal(out[i], 101 + (uint64_t)i);
	/* claimed ones are not claimed again; the next free ones are */
	assert_int_equal(lookahead_walk_ahead(la, 1, "f001", out, 2), 2);
	assert_int_equal(out[0], 101 + LOOKAHEAD_AHEAD);
	assert_int_equal(out[1], 102 + LOOKAHEAD_AHEAD);
	/* a miss in a claimed directory waits until its fetch ends ... */
	uint64_t t0 = clock_mono_ns();
	assert_int_equal(lookahead_wait(la, 101, 20000000ull), 1);
	assert_true(clock_mono_ns() - t0 >= 20000000ull);
	/* ... and not once its batch is there */
	put_batch(la, 101, 5000, 3, 0);
	assert_int_equal(lookahead_wait(la, 101, 1000000000ull), 0);
	assert_answers(la, 101, "f002", 5002);
	/* nor once the fetch ended without one */
	lookahead_ahead_done(la, 102);
	assert_int_equal(lookahead_wait(la, 102, 1000000000ull), 0);
	/* a directory with a batch is skipped; one whose fetch ended without
	 * one is claimed again */
	assert_int_equal(lookahead_walk_ahead(la, 1, "f000", out, 1), 1);
	assert_int_equal(out[0], 102);
	/* a change by this mount ends the batches: no claims from a dead one */
	lookahead_changed(la);
	assert_int_equal(lookahead_walk_ahead(la, 1, "f005", out, LOOKAHEAD_AHEAD), 0);
	lookahead_free(la);
}

/* PARENT's batches answer NAME; then lookahead_refill of PARENT with
 * BOUND_NS (START, *DATA): whether the lookup would claim a refill. */
static int refill_after(lookahead *la, uint64_t parent, const char *name, uint64_t bound_ns,
                        char *start, int *data)
{
	struct meta_inode got;
	uint64_t gen, read_ns;
	assert_int_equal(lookahead_get(la, parent, name, &got, &gen, &read_ns), 1);
	return lookahead_refill(la, parent, bound_ns, start, data);
}

static void test_refill_fetches_next_batch_once(void **state)
{
	(void)state;
	lookahead *la;
	char start[META_NAME_MAX + 1], name[16];
	int data = -1;
	assert_int_equal(lookahead_new(10000000000ull, &la), 0);
	put_range(la, 60, 600, 0, 10, 0, 0, lookahead_epoch(la), 0, 0); /* f000..f009 */
	/* before the middle: nothing to fetch yet */
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "f%03d", i);
		assert_int_equal(refill_after(la, 60, name, UINT64_MAX, start, &data), 0);
	}
	/* past it: once, from the least name after the batch's last */
	assert_int_equal(refill_after(la, 60, "f004", UINT64_MAX, start, &data), 1);
	assert_string_equal(start, "f009\001");
	assert_int_equal(data, 0);
	assert_int_equal(lookahead_refill(la, 60, UINT64_MAX, start, &data), 0);
	/* a miss meanwhile waits for the fetch on its way */
	assert_int_equal(lookahead_wait(la, 60, 1000000ull), 1);
	uint64_t epoch = lookahead_epoch(la);
	put_range(la, 60, 610, 10, 10, 0, 0, epoch, 1, 0); /* f010..f019 */
	assert_int_equal(lookahead_wait(la, 60, 1000000000ull), 0);
	/* the current batch answers its names, the next one the rest */
	assert_answers(la, 60, "f008", 608);
	assert_answers(la, 60, "f012", 612);
	/* ... and took the current one's place */
	assert_no_answer(la, 60, "f009");
	assert_answers(la, 60, "f013", 613);
	/* the new batch refills in its turn */
	assert_int_equal(refill_after(la, 60, "f015", UINT64_MAX, start, &data), 1);
	assert_string_equal(start, "f019\001");
	/* A batch put for the directory since the claim (the walk's own
	 * fetch) ends it: the refill's batch does not follow the new one. */
	epoch = lookahead_epoch(la);
	put_range(la, 60, 630, 30, 4, 0, 0, epoch, 0, 0); /* f030..f033 */
	put_range(la, 60, 620, 20, 10, 0, 0, epoch, 1, 0);
	assert_no_answer(la, 60, "f021");
	/* a batch that ends the directory claims nothing */
	put_batch(la, 61, 6100, 10, 0);
	assert_int_equal(refill_after(la, 61, "f008", UINT64_MAX, start, &data), 0);
	lookahead_free(la);
}

/* A next batch answers only while this mount changed nothing since its
 * fetch began: an unlink the current batch absorbs (lookahead_unlinked)
 * may have removed a name the next one read before it. */
static void test_refill_ends_with_any_change(void **state)
{
	(void)state;
	lookahead *la;
	char start[META_NAME_MAX + 1];
	int data;
	assert_int_equal(lookahead_new(10000000000ull, &la), 0);
	/* an unlink while the fetch is on its way: not kept */
	put_range(la, 70, 700, 0, 10, 0, 0, lookahead_epoch(la), 0, 0);
	assert_int_equal(refill_after(la, 70, "f006", UINT64_MAX, start, &data), 1);
	uint64_t epoch = lookahead_epoch(la);
	lookahead_unlinked(la, 70, "f001");
	assert_answers(la, 70, "f007", 707); /* absorbed */
	put_range(la, 70, 710, 10, 10, 0, 0, epoch, 1, 0);
	assert_no_answer(la, 70, "f011");
	/* kept, then an unlink before it answered: it does not answer */
	put_range(la, 71, 800, 0, 10, 0, 0, lookahead_epoch(la), 0, 0);
	assert_int_equal(refill_after(la, 71, "f006", UINT64_MAX, start, &data), 1);
	put_range(la, 71, 810, 10, 10, 0, 0, lookahead_epoch(la), 1, 0);
	lookahead_unlinked(la, 71, "f002");
	assert_no_answer(la, 71, "f011");
	/* and a batch an unlink went into claims no refill (deleting a
	 * directory would fetch batches no lookup can use) */
	put_range(la, 72, 900, 0, 10, 0, 0, lookahead_epoch(la), 0, 0);
	lookahead_unlinked(la, 72, "f000");
	assert_int_equal(refill_after(la, 72, "f007", UINT64_MAX, start, &data), 0);
	/* any other change ends every batch, the next ones too */
	put_range(la, 73, 950, 0, 10, 0, 0, lookahead_epoch(la), 0, 0);
	assert_int_equal(refill_after(la, 73, "f006", UINT64_MAX, start, &data), 1);
	put_range(la, 73, 960, 10, 10, 0, 0, lookahead_epoch(la), 1, 0);
	lookahead_changed(la);
	assert_no_answer(la, 73, "f012");
	lookahead_free(la);
}

/* A walk too slow for the next batch to be used within its bound
 * claims no refill: the batch's end fetches, as before. */
static void test_refill_not_for_slow_walks(void **state)
{
	(void)state;
	lookahead *la;
	char start[META_NAME_MAX + 1];
	int data;
	assert_int_equal(lookahead_new(10000000000ull, &la), 0); /* 10 s */
	/* 5 of 10 entries in 3 s: the next batch's last asked for in ~9 s */
	put_range(la, 80, 800, 0, 10, 0, 0, lookahead_epoch(la), 0, 3000000000ull);
	assert_int_equal(refill_after(la, 80, "f004", UINT64_MAX, start, &data), 0);
	/* in 1 s: ~3 s, well within */
	put_range(la, 81, 810, 0, 10, 0, 0, lookahead_epoch(la), 0, 1000000000ull);
	assert_int_equal(refill_after(la, 81, "f004", UINT64_MAX, start, &data), 1);
	/* A batch with inline bytes is held to their bound (DATA_TTL_NS):
	 * 5 of 10 in 100 ms, the next batch's last bytes needed in ~300 ms. */
	struct lookahead_batch *b = lookahead_batch_new();
	assert_non_null(b);
	struct meta_idata_out d = {.buf = (uint8_t *)"data", .len = 4};
	char name[16];
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "f%03d", i);
		add_ent(b, 820 + (uint64_t)i, name, 0, &d);
	}
	lookahead_put(la, 82, b, 1, lookahead_epoch(la), clock_mono_ns() - 100000000ull, 0);
	assert_int_equal(refill_after(la, 82, "f004", 300000000ull, start, &data), 0);
	assert_int_equal(lookahead_refill(la, 82, 0, start, &data), 0); /* not for bytes */
	assert_int_equal(lookahead_refill(la, 82, 500000000ull, start, &data), 1);
	assert_int_equal(data, 1);
	lookahead_free(la);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_run_grows),
	    cmocka_unit_test(test_scanned_dir_fetches_at_first_miss),
	    cmocka_unit_test(test_batch_spans_only_its_names),
	    cmocka_unit_test(test_interleaved_walks_answer_their_names),
	    cmocka_unit_test(test_unlink_drops_only_holders),
	    cmocka_unit_test(test_long_names_answer),
	    cmocka_unit_test(test_walk_ahead_claims_next_dirs_once),
	    cmocka_unit_test(test_refill_fetches_next_batch_once),
	    cmocka_unit_test(test_refill_ends_with_any_change),
	    cmocka_unit_test(test_refill_not_for_slow_walks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
