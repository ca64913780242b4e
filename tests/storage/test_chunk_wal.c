/* test_chunk_wal.c - the metadata write-ahead log of chunk_store (sync mode).
 *
 * A "crash" here is a forked child that commits batches and _exits without
 * closing the store: its records are in the log, not yet checkpointed into
 * LMDB, exactly as after kill -9 (the page cache keeps what was written).
 *
 *   torn_tail        a corrupt last record fails its CRC and ends the run;
 *                    the records before it are replayed
 *   idempotent       replaying a run LMDB already holds, once or twice,
 *                    changes nothing; deletes replay in order
 *   snapshot         fsck's read-only view sees the log, leaves it alone
 *   verify_last      a last record whose data the verify callback rejects
 *                    is dropped, in the same boot (kill -9 only) as after a
 *                    reboot (CFS_TEST_BOOT_ID); the same files verified OK
 *                    keep it
 *   seq_after_reopen records written after a replay never join stale ones
 *                    left further in the file
 *   overlay_views    scan, last, count and get merge the overlay (changes
 *                    not yet in LMDB) with LMDB, deletes included
 *   unflushed_data   power loss simulated at engine level: the last record
 *                    reached the disk, its chunk data did not (the block
 *                    zeroed behind the engine's back). Reopen must drop that
 *                    record (the write was never acknowledged: its ack waits
 *                    for the flush that would have made the data durable)
 *                    and read the chunk's previous version, intact. What it
 *                    proves: the recovery rule for the one record that may
 *                    outrun its data; not that the disk honours flushes.
 *   unissued_data    kill -9 with a record beside data: the engine writes
 *                    a batch's record while its data write runs; the child
 *                    (CFS_TEST_CRASH_RECORD=2) never issues its second
 *                    write's data and _exits once that record is written.
 *                    Reopen in the same boot drops the record and reads the
 *                    first (acknowledged) version intact, nothing leaked;
 *                    a third write after that reopen works.
 *   failed_sync      a batch's data sync fails with -ENOSPC after its
 *                    record was written (CFS_TEST_SYNC_ENOSPC=2): that
 *                    record's seq is spent, so a later record at the same
 *                    offset would end the replay and lose every batch
 *                    after it. The child writes versions 1, 2 (fails) and
 *                    3, then _exits (kill -9): whatever was acknowledged
 *                    must be what reopen reads. Before the fix version 3
 *                    was acknowledged and lost (reopen read version 1);
 *                    now the failed sync puts the target in ERROR and
 *                    version 3 is refused with -EIO.
 *   verify_unsure    a verify callback that cannot check (-ENOMEM: no
 *                    buffer, as verify_on_disk under memory pressure) fails
 *                    the open and leaves the log alone; a later open keeps
 *                    the record. Before, the record was dropped as "not on
 *                    disk" and the log cut: an acknowledged batch lost for
 *                    a transient error.
 *   direct_then_crash a batch too big for the log commits straight into
 *                    LMDB (commit_direct, a checkpoint carrying it), then
 *                    kill -9 before any later record. The log still held
 *                    the run from before that checkpoint, and reopen
 *                    replayed it over the newer LMDB: a chunk the direct
 *                    batch had rewritten went back to its older version
 *                    (acknowledged change lost), one it deleted came back.
 *                    Now a checkpoint that carries a batch cuts the log.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "storage/chunk_engine.h"
#include "storage/chunk_store.h"
#include "../lib/testenv.h"

#define MB (1u << 20)

static uint32_t one_crc;

/* A metadata value that tells versions apart by commit_ver. */
static struct chunk_meta mk(uint32_t block, uint64_t ver)
{
	struct chunk_meta m;
	memset(&m, 0, sizeof(m));
	m.pos = (struct chunk_pos){ 0, 0, block };
	m.len = 4096;
	m.npages = 1;
	m.page_crc = &one_crc;
	m.commit_ver = m.pending_ver = ver;
	m.chain_ver = 1;
	return m;
}

static struct chunk_id cid(uint64_t ino, uint32_t idx)
{
	return (struct chunk_id){ ino, idx };
}

static char *meta_dir(const char *tag)
{
	char *d = testenv_tmpdir(tag);
	char *m = malloc(strlen(d) + 8);
	sprintf(m, "%s/meta", d);
	assert_int_equal(mkdir(m, 0755), 0);
	free(d);
	return m;
}

struct op {
	int del;
	uint64_t ino;
	uint32_t idx;
	uint64_t ver;
};

/* Commits each batch (ops until a {-1} marker), one record each. */
static void commit_ops(struct chunk_store *s, const struct op *ops, size_t n)
{
	struct chunk_batch *b = NULL;
	for (size_t i = 0; i < n; i++) {
		if (ops[i].del < 0) {
			if (b)
				assert_int_equal(chunk_store_batch_commit(b), 0);
			b = NULL;
			continue;
		}
		if (!b)
			assert_int_equal(chunk_store_batch_begin(s, &b), 0);
		if (ops[i].del) {
			assert_int_equal(chunk_store_batch_del(b, cid(ops[i].ino, ops[i].idx)), 0);
		} else {
			struct chunk_meta m = mk(ops[i].idx, ops[i].ver);
			assert_int_equal(chunk_store_batch_put(b, cid(ops[i].ino, ops[i].idx), &m), 0);
		}
	}
	if (b)
		assert_int_equal(chunk_store_batch_commit(b), 0);
}

/* A child that commits OPS, then runs THEN (NULL: none; nonzero fails),
 * and exits without closing the store. */
static void crash_after_then(const char *dir, const struct op *ops, size_t n,
			     int (*then)(struct chunk_store *))
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct chunk_store *s;
		if (chunk_store_open(dir, 64 * MB, 1, &s))
			_exit(2);
		commit_ops(s, ops, n);
		_exit(then && then(s) ? 3 : 0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void crash_after(const char *dir, const struct op *ops, size_t n)
{
	crash_after_then(dir, ops, n, NULL);
}

/* ID's commit_ver, 0 when absent. */
static uint64_t ver_of(struct chunk_store *s, uint64_t ino, uint32_t idx)
{
	struct chunk_meta m;
	int rc = chunk_store_get(s, cid(ino, idx), &m);
	if (rc == -ENOENT)
		return 0;
	assert_int_equal(rc, 0);
	uint64_t v = m.commit_ver;
	chunk_meta_fini(&m);
	return v;
}

static void copy_file(const char *from, const char *to)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", from, to);
	assert_int_equal(system(cmd), 0);
}

static void path_in(char *out, size_t n, const char *dir, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

/* Three batches (A=1; B=2, C=9; A=3, del C) */
static const struct op three[] = {
	{ 0, 1, 0, 1 }, { -1, 0, 0, 0 },
	{ 0, 2, 0, 2 }, { 0, 3, 0, 9 }, { -1, 0, 0, 0 },
	{ 0, 1, 0, 3 }, { 1, 3, 0, 0 }, { -1, 0, 0, 0 },
};

static void test_torn_tail(void **state)
{
	(void)state;
	char *dir = meta_dir("wal_torn");
	crash_after(dir, three, sizeof(three) / sizeof(three[0]));
	char wal[1024];
	path_in(wal, sizeof(wal), dir, "wal");
	/* Each small batch is one 4 KiB record: the third starts at 8 KiB.
	 * Flip a payload byte: the CRC must catch it. */
	int fd = open(wal, O_RDWR);
	assert_true(fd >= 0);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, 8192 + 40), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, 8192 + 40), 1);
	close(fd);
	struct chunk_store *s;
	assert_int_equal(chunk_store_open(dir, 64 * MB, 1, &s), 0);
	assert_int_equal(ver_of(s, 1, 0), 1); /* the torn third batch is gone... */
	assert_int_equal(ver_of(s, 3, 0), 9);
	assert_int_equal(ver_of(s, 2, 0), 2); /* ...the first two replayed */
	assert_int_equal(chunk_store_count(s), 3);
	chunk_store_close(s);
	free(dir);
}

static void test_idempotent(void **state)
{
	(void)state;
	char *dir = meta_dir("wal_idem");
	crash_after(dir, three, sizeof(three) / sizeof(three[0]));
	char wal[1024], orig[1024];
	path_in(wal, sizeof(wal), dir, "wal");
	path_in(orig, sizeof(orig), dir, "wal.orig");
	copy_file(wal, orig);
	for (int round = 0; round < 3; round++) {
		/* Round 0 replays into an empty LMDB; rounds 1 and 2 replay the
		 * same run again over an LMDB that already holds it. */
		if (round)
			copy_file(orig, wal);
		struct chunk_store *s;
		assert_int_equal(chunk_store_open(dir, 64 * MB, 1, &s), 0);
		assert_int_equal(ver_of(s, 1, 0), 3);
		assert_int_equal(ver_of(s, 2, 0), 2);
		assert_int_equal(ver_of(s, 3, 0), 0); /* deleted after its put */
		assert_int_equal(chunk_store_count(s), 2);
		chunk_store_close(s);
	}
	/* After a clean close the log is cut: nothing replays. */
	struct chunk_store *s;
	assert_int_equal(chunk_store_open(dir, 64 * MB, 0, &s), 0);
	assert_int_equal(ver_of(s, 1, 0), 3);
	chunk_store_close(s);
	free(dir);
}

/* fsck's view of a running target: the log's records without touching the
 * log (a later real open still replays them). */
static void test_snapshot(void **state)
{
	(void)state;
	char *dir = meta_dir("wal_snap");
	crash_after(dir, three, sizeof(three) / sizeof(three[0]));
	for (int round = 0; round < 2; round++) {
		struct chunk_store *s;
		assert_int_equal(chunk_store_open_snapshot(dir, 64 * MB, &s), 0);
		assert_int_equal(ver_of(s, 1, 0), 3);
		assert_int_equal(ver_of(s, 2, 0), 2);
		assert_int_equal(ver_of(s, 3, 0), 0);
		assert_int_equal(chunk_store_count(s), 2);
		struct chunk_batch *b;
		assert_true(chunk_store_batch_begin(s, &b) < 0 || (chunk_store_batch_abort(b), 0));
		chunk_store_close(s);
	}
	struct chunk_store *s;
	assert_int_equal(chunk_store_open(dir, 64 * MB, 1, &s), 0);
	assert_int_equal(ver_of(s, 1, 0), 3);
	chunk_store_close(s);
	free(dir);
}

static int verify_calls;

static int reject_ver2(void *arg, struct chunk_id id, const struct chunk_meta *m)
{
	(void)arg;
	(void)id;
	verify_calls++;
	return m->commit_ver == 2 ? -EIO : 0;
}

static int accept_all(void *arg, struct chunk_id id, const struct chunk_meta *m)
{
	(void)arg;
	(void)id;
	(void)m;
	verify_calls++;
	return 0;
}

static void test_verify_last(void **state)
{
	(void)state;
	static const struct op ops[] = {
		{ 0, 1, 0, 1 }, { 0, 4, 0, 2 }, { -1, 0, 0, 0 }, /* ver 2 in a non-last record */
		{ 0, 1, 0, 2 }, { 0, 5, 0, 7 }, { -1, 0, 0, 0 }, /* last: A=2 (rejected), E=7 */
	};
	char *dir = meta_dir("wal_verify");
	crash_after(dir, ops, sizeof(ops) / sizeof(ops[0]));
	char *copy = meta_dir("wal_verify_copy");
	char from[1024], to[1024];
	const char *files[] = { "data.mdb", "wal" };
	for (int i = 0; i < 2; i++) {
		path_in(from, sizeof(from), dir, files[i]);
		path_in(to, sizeof(to), copy, files[i]);
		copy_file(from, to);
	}
	struct chunk_store *s;
	/* Same boot (kill -9 alone): checked too, as a record may have been
	 * written beside a data write that was never issued. */
	verify_calls = 0;
	char *same = meta_dir("wal_verify_same");
	for (int i = 0; i < 2; i++) {
		path_in(from, sizeof(from), dir, files[i]);
		path_in(to, sizeof(to), same, files[i]);
		copy_file(from, to);
	}
	assert_int_equal(chunk_store_open_verified(same, 64 * MB, 1, reject_ver2, NULL, &s), 0);
	assert_int_equal(verify_calls, 1);
	assert_int_equal(ver_of(s, 1, 0), 1);
	assert_int_equal(ver_of(s, 5, 0), 0);
	chunk_store_close(s);
	free(same);
	/* After a reboot (power loss) the last record's data is checked. */
	setenv("CFS_TEST_BOOT_ID", "another-boot", 1);
	verify_calls = 0;
	assert_int_equal(chunk_store_open_verified(dir, 64 * MB, 1, reject_ver2, NULL, &s), 0);
	assert_int_equal(verify_calls, 1); /* the last record's first put fails it */
	assert_int_equal(ver_of(s, 1, 0), 1); /* the whole last record dropped */
	assert_int_equal(ver_of(s, 5, 0), 0);
	assert_int_equal(ver_of(s, 4, 0), 2);
	chunk_store_close(s);
	verify_calls = 0;
	assert_int_equal(chunk_store_open_verified(copy, 64 * MB, 1, accept_all, NULL, &s), 0);
	assert_int_equal(verify_calls, 2); /* only the last record's puts are checked */
	assert_int_equal(ver_of(s, 1, 0), 2);
	assert_int_equal(ver_of(s, 5, 0), 7);
	chunk_store_close(s);
	unsetenv("CFS_TEST_BOOT_ID");
	free(dir);
	free(copy);
}

static void test_seq_after_reopen(void **state)
{
	(void)state;
	char *dir = meta_dir("wal_seq");
	/* Many records, then fewer after each reopen: stale records stay in
	 * the file right after the new run. */
	struct op many[40];
	for (int i = 0; i < 20; i++) {
		many[2 * i] = (struct op){ 0, 1, (uint32_t)(i % 3), (uint64_t)(10 + i) };
		many[2 * i + 1] = (struct op){ -1, 0, 0, 0 };
	}
	crash_after(dir, many, 40);
	static const struct op second[] = { { 0, 1, 0, 100 }, { -1, 0, 0, 0 } };
	crash_after(dir, second, 2); /* opens (replays, cuts), writes, crashes */
	static const struct op third[] = { { 0, 1, 1, 200 }, { -1, 0, 0, 0 },
					   { 0, 1, 2, 300 }, { -1, 0, 0, 0 } };
	crash_after(dir, third, 4);
	struct chunk_store *s;
	assert_int_equal(chunk_store_open(dir, 64 * MB, 1, &s), 0);
	assert_int_equal(ver_of(s, 1, 0), 100);
	assert_int_equal(ver_of(s, 1, 1), 200);
	assert_int_equal(ver_of(s, 1, 2), 300);
	chunk_store_close(s);
	free(dir);
}

struct scan_ctx {
	struct chunk_id ids[16];
	uint64_t vers[16];
	int n;
};

static int scan_cb(void *arg, struct chunk_id id, const struct chunk_meta *m, int derr)
{
	struct scan_ctx *c = arg;
	assert_int_equal(derr, 0);
	assert_true(c->n < 16);
	c->ids[c->n] = id;
	c->vers[c->n++] = m->commit_ver;
	return 0;
}

static void test_overlay_views(void **state)
{
	(void)state;
	char *dir = meta_dir("wal_views");
	static const struct op base[] = { { 0, 1, 0, 1 }, { 0, 1, 1, 1 }, { 0, 1, 2, 1 },
					  { 0, 2, 0, 1 }, { 0, 1, 5, 1 } };
	struct chunk_store *s;
	assert_int_equal(chunk_store_open(dir, 64 * MB, 1, &s), 0);
	commit_ops(s, base, 5);
	chunk_store_close(s); /* checkpointed into LMDB */
	assert_int_equal(chunk_store_open(dir, 64 * MB, 1, &s), 0);
	static const struct op upd[] = { { 1, 1, 1, 0 }, { 0, 1, 3, 2 }, { 0, 1, 0, 2 },
					 { 1, 1, 5, 0 }, { 1, 9, 9, 0 } };
	commit_ops(s, upd, 5);
	struct chunk_store_stat st;
	chunk_store_get_stat(s, &st);
	assert_true(st.wal);
	assert_int_equal(st.pending, 5);
	assert_int_equal(chunk_store_maintain(s), 0); /* not due: stays */
	for (int round = 0; round < 2; round++) {
		struct scan_ctx c = { .n = 0 };
		assert_int_equal(chunk_store_scan(s, cid(1, 0), cid(2, 0), scan_cb, &c), 0);
		assert_int_equal(c.n, 3);
		assert_true(c.ids[0].idx == 0 && c.vers[0] == 2);
		assert_true(c.ids[1].idx == 2 && c.vers[1] == 1);
		assert_true(c.ids[2].idx == 3 && c.vers[2] == 2);
		struct chunk_id last;
		struct chunk_meta m;
		assert_int_equal(chunk_store_last(s, 1, &last, &m), 0);
		assert_int_equal(last.idx, 3); /* idx 5 was deleted in the overlay */
		chunk_meta_fini(&m);
		assert_int_equal(chunk_store_last(s, 2, &last, &m), 0);
		assert_int_equal(last.idx, 0);
		chunk_meta_fini(&m);
		assert_int_equal(chunk_store_last(s, 7, &last, &m), -ENOENT);
		assert_int_equal(chunk_store_count(s), 4);
		assert_int_equal(ver_of(s, 1, 1), 0);
		struct chunk_store_reader *r;
		assert_int_equal(chunk_store_reader_new(s, &r), 0);
		assert_int_equal(chunk_store_reader_get(r, cid(1, 1), &m), -ENOENT);
		assert_int_equal(chunk_store_reader_get(r, cid(1, 3), &m), 0);
		assert_int_equal(m.commit_ver, 2);
		chunk_meta_fini(&m);
		chunk_store_reader_free(r);
		/* Round 1: the same views from LMDB alone. */
		chunk_store_close(s);
		assert_int_equal(chunk_store_open(dir, 64 * MB, 1, &s), 0);
		chunk_store_get_stat(s, &st);
		assert_int_equal(st.pending, 0);
	}
	chunk_store_close(s);
	free(dir);
}

/* ---- engine: a last record whose data never reached the disk ---------- */

static struct chunk_engine *open_engine(const char *dir)
{
	struct chunk_engine_cfg cfg;
	chunk_engine_cfg_default(&cfg);
	cfg.dir = dir;
	cfg.sync = 1;
	cfg.compact_interval_ms = 0;
	cfg.meta_map_bytes = 64 * MB;
	cfg.buf_cache_bytes = 8 * MB;
	struct chunk_engine *e = NULL;
	assert_int_equal(chunk_engine_open(&cfg, &e), 0);
	return e;
}

#define XLEN (256u << 10)

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

static void read_expect(const char *dir, uint32_t seed)
{
	struct chunk_engine *e = open_engine(dir);
	uint8_t *buf = malloc(XLEN), *want = malloc(XLEN);
	fill(want, XLEN, seed);
	struct chunk_read_range rr = { .id = { 5, 0 }, .off = 0, .len = XLEN, .dst = buf };
	assert_int_equal(chunk_engine_read(e, &rr, 1), 0);
	assert_int_equal(rr.result, (int)XLEN);
	assert_memory_equal(buf, want, XLEN);
	uint64_t chunks, leaked, doubled;
	assert_int_equal(chunk_engine_check(e, &chunks, &leaked, &doubled), 0);
	assert_int_equal(chunks, 1);
	assert_int_equal(leaked, 0);
	assert_int_equal(doubled, 0);
	chunk_engine_close(e);
	free(buf);
	free(want);
}

static void test_unflushed_data(void **state)
{
	(void)state;
	char *root = testenv_tmpdir("wal_unflushed");
	char dir[1024], copy[1024];
	path_in(dir, sizeof(dir), root, "t");
	path_in(copy, sizeof(copy), root, "copy");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct chunk_engine *e = open_engine(dir);
		uint8_t *data = malloc(XLEN);
		for (uint32_t seed = 1; seed <= 2; seed++) {
			fill(data, XLEN, seed);
			if (chunk_engine_write(e, (struct chunk_id){ 5, 0 }, 0, XLEN, data, 0, 1, NULL))
				_exit(2);
		}
		_exit(0); /* both acknowledged; no close, no checkpoint */
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	copy_file(dir, copy);
	/* Where version 2 lives: replay a copy of the metadata, unverified. */
	char meta[1100], mcopy[1100];
	path_in(meta, sizeof(meta), dir, "meta");
	snprintf(mcopy, sizeof(mcopy), "%s/meta2", root);
	copy_file(meta, mcopy);
	struct chunk_store *s;
	struct chunk_meta m;
	assert_int_equal(chunk_store_open(mcopy, 64 * MB, 0, &s), 0);
	assert_int_equal(chunk_store_get(s, cid(5, 0), &m), 0);
	chunk_store_close(s);
	assert_int_equal(m.len, XLEN);
	/* Version 2's data "never left the device cache": zero its block. */
	char path[1200];
	snprintf(path, sizeof(path), "%s/data/c%02u/f%03u", dir, m.pos.cls, m.pos.file);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t *zero = calloc(1, XLEN);
	off_t at = (off_t)(CHUNK_FILE_HDR + (uint64_t)m.pos.block * chunk_class_size(m.pos.cls));
	assert_int_equal(pwrite(fd, zero, XLEN, at), (ssize_t)XLEN);
	close(fd);
	free(zero);
	chunk_meta_fini(&m);
	setenv("CFS_TEST_BOOT_ID", "after-power-loss", 1); /* the reopen is after a reboot */
	read_expect(dir, 1);  /* record dropped: the previous version, intact */
	read_expect(copy, 2); /* control: data on disk, the record stays */
	unsetenv("CFS_TEST_BOOT_ID");
	free(root);
}

/* Forks a child that sets VAR=VAL (a test hook), opens the engine in DIR
 * and writes versions 1..N of chunk {5, 0} (fill's seeds), RC[v] each
 * write's result; then _exits with END(RC) without closing: a crash.
 * Returns the child's exit status (the engine's own _exit, if a hook
 * ends it first). */
static int write_child(const char *dir, const char *var, const char *val, uint32_t n,
		       int (*end)(const int *rc))
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv(var, val, 1);
		struct chunk_engine *e = open_engine(dir);
		uint8_t *data = malloc(XLEN);
		int rc[8] = { 0 };
		for (uint32_t seed = 1; seed <= n && seed < 8; seed++) {
			fill(data, XLEN, seed);
			rc[seed] = chunk_engine_write(e, (struct chunk_id){ 5, 0 }, 0, XLEN, data, 0, 1,
						      NULL);
		}
		_exit(end(rc));
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static int unissued_end(const int *rc)
{
	/* the engine _exits (77) once the second record is written: the
	 * second write must not have been acknowledged */
	return rc[1] || rc[2] ? 2 : 3;
}

static void test_unissued_data(void **state)
{
	(void)state;
	char *root = testenv_tmpdir("wal_unissued");
	char dir[1024];
	path_in(dir, sizeof(dir), root, "t");
	assert_int_equal(write_child(dir, "CFS_TEST_CRASH_RECORD", "2", 2, unissued_end), 77);
	/* The record of version 2 is the log's last: its data is not there. */
	char meta[1100];
	path_in(meta, sizeof(meta), dir, "meta");
	uint64_t records = 0, changes = 0;
	{
		char wal[1200];
		snprintf(wal, sizeof(wal), "%s/wal", meta);
		int fd = open(wal, O_RDONLY);
		assert_true(fd >= 0);
		uint8_t *buf = malloc(4 * MB);
		assert_true(pread(fd, buf, 4 * MB, 0) > 0);
		close(fd);
		assert_int_equal(chunk_store_wal_decode(buf, 4 * MB, &records, &changes), 0);
		free(buf);
	}
	assert_int_equal(records, 2);
	read_expect(dir, 1); /* same boot: dropped, version 1 intact, no leak */
	struct chunk_engine *e = open_engine(dir);
	uint8_t *data = malloc(XLEN);
	fill(data, XLEN, 3);
	struct chunk_info info;
	assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, 0 }, 0, XLEN, data, 0, 1, &info),
			 0);
	assert_int_equal(info.commit_ver, 2);
	chunk_engine_close(e);
	free(data);
	read_expect(dir, 3);
	free(root);
}

static int failed_sync_end(const int *rc)
{
	if (rc[1] != 0 || rc[2] == 0)
		return 2; /* version 1 acknowledged, 2 failed */
	if (rc[2] != -EIO)
		return rc[3] == 0 ? 5 : 6; /* retryable error (then 3 went on: 5) */
	return rc[3] == 0 ? 13 : rc[3] == -EIO ? 10 : 4;
}

static void test_failed_sync(void **state)
{
	(void)state;
	char *root = testenv_tmpdir("wal_failed_sync");
	char dir[1024];
	path_in(dir, sizeof(dir), root, "t");
	int code = write_child(dir, "CFS_TEST_SYNC_ENOSPC", "2", 3, failed_sync_end);
	if (code == 13 || code == 5) {
		read_expect(dir, 3); /* acknowledged: must survive */
		assert_int_equal(code, 13); /* and version 2's error was -EIO */
	} else {
		assert_int_equal(code, 10); /* refused: the ERROR state */
		/* Version 2 failed but its record and data reached the page
		 * cache: either 1 or 2 may come back, never a mix. */
		struct chunk_engine *e = open_engine(dir);
		uint8_t *buf = malloc(XLEN), *v1 = malloc(XLEN), *v2 = malloc(XLEN);
		fill(v1, XLEN, 1);
		fill(v2, XLEN, 2);
		struct chunk_read_range rr = { .id = { 5, 0 }, .off = 0, .len = XLEN, .dst = buf };
		assert_int_equal(chunk_engine_read(e, &rr, 1), 0);
		assert_int_equal(rr.result, (int)XLEN);
		assert_true(!memcmp(buf, v1, XLEN) || !memcmp(buf, v2, XLEN));
		/* The reopened target writes again, and keeps it. */
		fill(buf, XLEN, 4);
		assert_int_equal(chunk_engine_write(e, (struct chunk_id){ 5, 0 }, 0, XLEN, buf, 0, 1,
						    NULL),
				 0);
		chunk_engine_close(e);
		free(buf);
		free(v1);
		free(v2);
		read_expect(dir, 4);
	}
	free(root);
}

static int no_memory(void *arg, struct chunk_id id, const struct chunk_meta *m)
{
	(void)arg;
	(void)id;
	(void)m;
	verify_calls++;
	return -ENOMEM;
}

static void test_verify_unsure(void **state)
{
	(void)state;
	static const struct op ops[] = {
		{ 0, 1, 0, 1 }, { -1, 0, 0, 0 },
		{ 0, 1, 0, 2 }, { -1, 0, 0, 0 }, /* last: A=2, acknowledged */
	};
	char *dir = meta_dir("wal_unsure");
	crash_after(dir, ops, sizeof(ops) / sizeof(ops[0]));
	struct chunk_store *s = NULL;
	verify_calls = 0;
	assert_int_equal(chunk_store_open_verified(dir, 64 * MB, 1, no_memory, NULL, &s), -ENOMEM);
	assert_int_equal(verify_calls, 1);
	assert_int_equal(chunk_store_open_verified(dir, 64 * MB, 1, accept_all, NULL, &s), 0);
	assert_int_equal(ver_of(s, 1, 0), 2);
	chunk_store_close(s);
	free(dir);
}

/* One batch too big for the log (over a quarter of it): A=2, del B, and
 * enough deletes of absent chunks (17 bytes each in a record) to pass
 * 1 MiB. */
static int commit_huge(struct chunk_store *s)
{
	struct chunk_batch *b;
	if (chunk_store_batch_begin(s, &b))
		return -1;
	struct chunk_meta m = mk(0, 2);
	if (chunk_store_batch_put(b, cid(1, 0), &m) || chunk_store_batch_del(b, cid(2, 0)))
		return -1;
	for (uint32_t i = 0; i < 70000; i++)
		if (chunk_store_batch_del(b, cid(1000, i)))
			return -1;
	return chunk_store_batch_commit(b);
}

static void test_direct_then_crash(void **state)
{
	(void)state;
	char *dir = meta_dir("wal_direct");
	/* In the log: A=1, B=5; then the huge batch, and kill -9 before any
	 * later record. */
	static const struct op first[] = { { 0, 1, 0, 1 }, { 0, 2, 0, 5 }, { -1, 0, 0, 0 } };
	crash_after_then(dir, first, 3, commit_huge);
	struct chunk_store *s;
	assert_int_equal(chunk_store_open(dir, 64 * MB, 1, &s), 0);
	assert_int_equal(ver_of(s, 1, 0), 2); /* the direct batch's put... */
	assert_int_equal(ver_of(s, 2, 0), 0); /* ...and its delete survive */
	chunk_store_close(s);
	free(dir);
}

int main(void)
{
	log_set_level(LOG_LVL_WARN);
	one_crc = crc32c(0, "x", 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_torn_tail),
		cmocka_unit_test(test_idempotent),
		cmocka_unit_test(test_snapshot),
		cmocka_unit_test(test_verify_last),
		cmocka_unit_test(test_seq_after_reopen),
		cmocka_unit_test(test_overlay_views),
		cmocka_unit_test(test_unflushed_data),
		cmocka_unit_test(test_unissued_data),
		cmocka_unit_test(test_failed_sync),
		cmocka_unit_test(test_verify_unsure),
		cmocka_unit_test(test_direct_then_crash),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
}
