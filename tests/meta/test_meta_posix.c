/* test_meta_posix.c - issue 14 at the meta level, on every KV backend:
 * special files (type, rdev, CAP_MKNOD rule, immediate reclaim), directory
 * link counts (2 + subdirectories through mkdir, rmdir, rename between
 * parents, replace and exchange), parent mtime/ctime moved by every entry
 * change (and an explicit mtime kept until the next one), creates in one
 * directory from two instances at once without conflicts on lmdb, and the
 * set-id rules of setattr, and a lookup-ahead (LOOKUP_PLUS) whose entries'
 * inodes come in one multi-key read (on etcd: counted in HTTP requests).
 *
 * KV URLs as meta_fixture.h (mem:// and lmdb:// by default); built with
 * META_POSIX_ETCD (test_meta_posix_etcd) it starts a one-member etcd and
 * runs the same cases there (exit 77 without etcd). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/clock.h"
#include "common/status.h"
#include "kv/etcd_client.h"
#include "kv/etcd_engine.h"
#include "meta_fixture.h"


#define N(s) meta_name_c(s)
#define RQ fx_req(9)
#define R1 META_ROOT_INO

static struct fx F;
static meta_ctx *M;

static const struct meta_cred ALICE = { 1000, 1000, 0, NULL };
static const struct meta_cred BOB = { 1001, 1001, 0, NULL };

static int setup(void **state) { return fx_setup_meta(&F, &M); }

static int teardown(void **state) { return fx_teardown_meta(&F, &M); }

static struct meta_inode *attr(uint64_t ino)
{
	static struct meta_inode in;
	assert_int_equal(meta_getattr(M, ino, &in), 0);
	return &in;
}

static uint64_t mkdir_(uint64_t dir, const char *name)
{
	struct meta_inode in;
	assert_int_equal(meta_mkdir(M, &FX_ROOT, RQ, dir, N(name), 0777, &in), 0);
	return in.ino;
}

static uint64_t mkfile_(const struct meta_cred *c, uint64_t dir, const char *name,
			uint32_t mode)
{
	struct meta_inode in;
	assert_int_equal(meta_create(M, c, RQ, dir, N(name), mode, META_O_EXCL, &in, NULL), 0);
	return in.ino;
}

static void test_special(void **state)
{
	static struct meta_inode in;
	uint64_t d = mkdir_(R1, "d");
	assert_int_equal(meta_mknod(M, &FX_ROOT, RQ, d, N("fifo"), S_IFIFO | 0640, 0, &in), 0);
	assert_int_equal(in.type, META_T_FIFO);
	assert_int_equal(in.mode, 0640);
	assert_false(in.has_layout);
	uint64_t fifo = in.ino;
	assert_int_equal(meta_mknod(M, &FX_ROOT, RQ, d, N("chr"), S_IFCHR | 0600, 0x10305, &in),
			 0);
	assert_int_equal(attr(in.ino)->type, META_T_CHR);
	assert_true(attr(in.ino)->rdev == 0x10305);
	assert_int_equal(meta_mknod(M, &FX_ROOT, RQ, d, N("blk"), S_IFBLK | 0600, 7, &in), 0);
	assert_int_equal(meta_mknod(M, &FX_ROOT, RQ, d, N("sock"), S_IFSOCK | 0755, 0, &in), 0);
	assert_int_equal(in.type, META_T_SOCK);
	assert_int_equal(meta_mknod(M, &FX_ROOT, RQ, d, N("reg"), S_IFREG | 0644, 0, &in), 0);
	assert_int_equal(in.type, META_T_FILE);
	assert_true(in.has_layout);
	/* devices need root (CAP_MKNOD); FIFOs and sockets do not */
	assert_int_equal(meta_mknod(M, &ALICE, RQ, d, N("c2"), S_IFCHR | 0600, 1, &in), -EPERM);
	assert_int_equal(meta_mknod(M, &ALICE, RQ, d, N("b2"), S_IFBLK | 0600, 1, &in), -EPERM);
	assert_int_equal(meta_mknod(M, &ALICE, RQ, d, N("f2"), S_IFIFO | 0600, 0, &in), 0);
	assert_int_equal(in.uid, 1000);
	assert_int_equal(meta_mknod(M, &FX_ROOT, RQ, d, N("bad"), 0170000 | 0600, 0, &in),
			 -EINVAL);
	assert_int_equal(meta_mknod(M, &FX_ROOT, RQ, d, N("fifo"), S_IFIFO | 0600, 0, &in),
			 -EEXIST);
	/* listed with their types */
	struct meta_dirent ents[16];
	int n, eof;
	assert_int_equal(meta_readdir(M, &FX_ROOT, d, N(""), ents, 16, &n, &eof), 0);
	assert_int_equal(n, 6);
	for (int i = 0; i < n; i++)
		if (!strcmp(ents[i].name, "blk"))
			assert_int_equal(ents[i].type, META_T_BLK);
	/* hard links and removal: nodes have no chunks, nothing goes to GC */
	assert_int_equal(meta_link(M, &FX_ROOT, RQ, fifo, d, N("fifo2"), &in), 0);
	assert_int_equal(in.nlink, 2);
	assert_int_equal(meta_unlink(M, &FX_ROOT, RQ, d, N("fifo")), 0);
	assert_int_equal(meta_unlink(M, &FX_ROOT, RQ, d, N("fifo2")), 0);
	assert_int_equal(meta_getattr(M, fifo, &in), -ENOENT);
	assert_int_equal(meta_gc_step(M), 0);
	/* a size change is refused on a node */
	struct meta_setattr sa = { .valid = META_SET_SIZE, .size = 5 };
	assert_int_equal(meta_lookup(M, &FX_ROOT, d, N("sock"), &in), 0);
	assert_int_equal(meta_setattr(M, &FX_ROOT, RQ, in.ino, &sa, NULL), -EINVAL);
}

/* nlink of every directory equals 2 + its subdirectories in the listing. */
static void check_nlink(uint64_t dir)
{
	static struct meta_dirent ents[256];
	int n, eof, subdirs = 0;
	assert_int_equal(meta_readdir(M, &FX_ROOT, dir, N(""), ents, 256, &n, &eof), 0);
	assert_true(eof);
	for (int i = 0; i < n; i++)
		if (ents[i].type == META_T_DIR)
			subdirs++;
	assert_int_equal(attr(dir)->nlink, 2 + subdirs);
	struct meta_inode in;
	/* lookup answers the same */
	assert_int_equal(meta_lookup(M, &FX_ROOT, dir, N("."), &in), 0);
	assert_int_equal(in.nlink, 2 + subdirs);
}

static void test_dir_nlink(void **state)
{
	assert_int_equal(attr(R1)->nlink, 2);
	uint64_t a = mkdir_(R1, "a"), b = mkdir_(R1, "b");
	check_nlink(R1);
	mkdir_(a, "x");
	uint64_t y = mkdir_(a, "y");
	mkfile_(&FX_ROOT, a, "f", 0644);
	check_nlink(a);
	assert_int_equal(attr(a)->nlink, 4);
	assert_int_equal(meta_rmdir(M, &FX_ROOT, RQ, a, N("x")), 0);
	check_nlink(a);
	/* between parents */
	assert_int_equal(meta_rename(M, &FX_ROOT, RQ, a, N("y"), b, N("y"), 0), 0);
	check_nlink(a);
	check_nlink(b);
	assert_int_equal(attr(b)->nlink, 3);
	assert_int_equal(attr(y)->parent, b);
	/* replacing an empty directory in the other parent */
	mkdir_(a, "z");
	assert_int_equal(meta_rename(M, &FX_ROOT, RQ, a, N("z"), b, N("y"), 0), 0);
	check_nlink(a);
	check_nlink(b);
	/* replacing within one parent */
	mkdir_(b, "p");
	mkdir_(b, "q");
	assert_int_equal(meta_rename(M, &FX_ROOT, RQ, b, N("p"), b, N("q"), 0), 0);
	check_nlink(b);
	/* exchange of a directory and a file across parents */
	assert_int_equal(meta_rename(M, &FX_ROOT, RQ, b, N("q"), a, N("f"),
				     META_RENAME_EXCHANGE), 0);
	check_nlink(a);
	check_nlink(b);
	/* a directory with subdirectories moved under another */
	assert_int_equal(meta_rename(M, &FX_ROOT, RQ, R1, N("a"), b, N("a"), 0), 0);
	check_nlink(R1);
	check_nlink(b);
	check_nlink(a);
	/* removed directories leave no counters behind: a recreated name
	 * starts at 2 */
	assert_int_equal(meta_rmdir(M, &FX_ROOT, RQ, a, N("f")), 0);
	check_nlink(a);
	assert_int_equal(attr(a)->nlink, 2);
	struct meta_fsck_report r;
	assert_int_equal(meta_fsck(M, NULL, 0, &r), 0);
	assert_int_equal(r.nlink_mismatch, 0);
	assert_int_equal(r.dir_nlink_mismatch, 0);
	assert_int_equal(r.corrupt_records, 0);
}

static int64_t mt(uint64_t ino)
{
	return attr(ino)->mtime;
}

static int64_t ct(uint64_t ino)
{
	return attr(ino)->ctime;
}

/* Each entry change moves the parent's mtime and ctime forward, once the
 * last change is older than the time grain (META_DIR_TIME_GRAIN_NS, 4 ms:
 * the coarse clock of local disks' timestamps). */
#define MOVES(dir, call)                                                            \
	do {                                                                          \
		usleep(5000);                                                           \
		int64_t m0 = mt(dir), c0 = ct(dir);                                     \
		assert_int_equal((call), 0);                                            \
		assert_true(mt(dir) > m0);                                              \
		assert_true(ct(dir) > c0);                                              \
	} while (0)

static void test_parent_times(void **state)
{
	static struct meta_inode in;
	uint64_t p = mkdir_(R1, "p"), q = mkdir_(R1, "q");
	MOVES(p, meta_create(M, &FX_ROOT, RQ, p, N("f"), 0644, META_O_EXCL, &in, NULL));
	uint64_t f = in.ino;
	MOVES(p, meta_mkdir(M, &FX_ROOT, RQ, p, N("sub"), 0755, &in));
	MOVES(p, meta_symlink(M, &FX_ROOT, RQ, p, N("sym"), N("f"), &in));
	MOVES(p, meta_mknod(M, &FX_ROOT, RQ, p, N("fifo"), S_IFIFO | 0600, 0, &in));
	MOVES(p, meta_link(M, &FX_ROOT, RQ, f, p, N("hard"), &in));
	MOVES(p, meta_rename(M, &FX_ROOT, RQ, p, N("hard"), p, N("hard2"), 0));
	MOVES(p, meta_rename(M, &FX_ROOT, RQ, p, N("hard2"), q, N("hard"), 0));
	MOVES(q, meta_rename(M, &FX_ROOT, RQ, p, N("sym"), q, N("sym"), 0));
	MOVES(p, meta_unlink(M, &FX_ROOT, RQ, p, N("fifo")));
	MOVES(p, meta_rmdir(M, &FX_ROOT, RQ, p, N("sub")));
	/* failed operations and opens of existing files change nothing */
	int64_t before = mt(p);
	assert_int_equal(meta_rmdir(M, &FX_ROOT, RQ, p, N("none")), -ENOENT);
	assert_int_equal(meta_create(M, &FX_ROOT, RQ, p, N("f"), 0644, 0, &in, NULL), 0);
	assert_true(mt(p) == before);
	/* an explicit mtime sticks until the next entry change */
	struct meta_setattr sa = { .valid = META_SET_MTIME | META_SET_ATIME, .mtime = 2000,
				   .atime = 1000 };
	assert_int_equal(meta_setattr(M, &FX_ROOT, RQ, p, &sa, &in), 0);
	assert_true(in.mtime == 2000);
	assert_true(mt(p) == 2000);
	assert_true(ct(p) > 2000);
	MOVES(p, meta_create(M, &FX_ROOT, RQ, p, N("g"), 0644, META_O_EXCL, &in, NULL));
	assert_true(mt(p) > 2000);
}

/* Creates in one directory from two instances at once: on lmdb and mem
 * the parent's counters add no conflict, so no create retries. */
struct creator {
	meta_ctx *m;
	uint64_t dir;
	int id, n, failed;
};

static void *create_thread(void *arg)
{
	struct creator *c = arg;
	for (int i = 0; i < c->n; i++) {
		char name[32];
		struct meta_inode in;
		snprintf(name, sizeof(name), "c%d-%d", c->id, i);
		if (meta_create(c->m, &FX_ROOT, fx_req(100 + c->id), c->dir, N(name), 0644,
				META_O_EXCL, &in, NULL))
			c->failed++;
		if (i % 8 == 0) {
			snprintf(name, sizeof(name), "d%d-%d", c->id, i);
			if (meta_mkdir(c->m, &FX_ROOT, fx_req(100 + c->id), c->dir, N(name), 0755,
				       &in))
				c->failed++;
		}
	}
	return NULL;
}

static void test_concurrent_creates(void **state)
{
	uint64_t d = mkdir_(R1, "many");
	meta_ctx *m2 = fx_meta(&F, 2);
	struct creator c[2] = { { M, d, 0, 40, 0 }, { m2, d, 1, 40, 0 } };
	pthread_t t[2];
	struct meta_stats s0, s1;
	meta_get_stats(M, &s0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, create_thread, &c[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(c[i].failed, 0);
	}
	meta_get_stats(M, &s1);
	check_nlink(d);
	assert_int_equal(attr(d)->nlink, 2 + 2 * 5);
	if (!strncmp(fx_url, "lmdb", 4))
		assert_int_equal(s1.retries - s0.retries, 0);
	meta_free(m2);
}

static uint32_t mode_after(uint64_t ino, const struct meta_cred *c, unsigned valid, int expect)
{
	struct meta_setattr sa = { .valid = valid, .size = 1 };
	assert_int_equal(meta_setattr(M, c, RQ, ino, &sa, NULL), expect);
	return attr(ino)->mode;
}

static void chmod_root(uint64_t ino, uint32_t mode)
{
	struct meta_setattr sa = { .valid = META_SET_MODE, .mode = mode };
	assert_int_equal(meta_setattr(M, &FX_ROOT, RQ, ino, &sa, NULL), 0);
}

/* Linux's set-id rules (meta_attr.c): kill on write/truncate by anyone
 * without CAP_FSETID, S_ISGID only with group-execute or outside the
 * group; chmod's S_ISGID rule; sticky bit on files kept; ftruncate
 * through a write fd without write permission. */
static void test_setid(void **state)
{
	uint64_t f = mkfile_(&FX_ROOT, R1, "f", 0644);
	chmod_root(f, 06777);
	/* root: nothing dropped */
	assert_int_equal(mode_after(f, &FX_ROOT, META_SET_KILL_SUIDGID, 0), 06777);
	/* another user with write permission: both (group-execute set) */
	assert_int_equal(mode_after(f, &BOB, META_SET_KILL_SUIDGID, 0), 0777);
	/* S_ISGID without group-execute: kept for a group member, dropped
	 * for others */
	static const uint32_t g0[] = { 0 };
	const struct meta_cred in_group = { 1001, 1001, 1, g0 };
	chmod_root(f, 06766);
	assert_int_equal(mode_after(f, &in_group, META_SET_KILL_SUIDGID, 0), 02766);
	assert_int_equal(mode_after(f, &BOB, META_SET_KILL_SUIDGID, 0), 0766);
	/* without write permission: refused, unless the fd was opened for
	 * writing (permission checked then) */
	chmod_root(f, 06755);
	assert_int_equal(mode_after(f, &BOB, META_SET_KILL_SUIDGID, -EACCES), 06755);
	assert_int_equal(mode_after(f, &BOB, META_SET_KILL_SUIDGID | META_SET_FD_WRITE, 0), 0755);
	assert_int_equal(mode_after(f, &BOB, META_SET_SIZE, -EACCES), 0755);
	assert_int_equal(mode_after(f, &BOB, META_SET_SIZE | META_SET_FD_WRITE, 0), 0755);
	assert_int_equal(attr(f)->size, 1);
	/* chmod: S_ISGID dropped for an owner outside the group; sticky kept */
	uint64_t g = mkfile_(&ALICE, mkdir_(R1, "open"), "g", 0644);
	struct meta_setattr sa = { .valid = META_SET_GID, .gid = 0 };
	assert_int_equal(meta_setattr(M, &FX_ROOT, RQ, g, &sa, NULL), 0);
	sa = (struct meta_setattr){ .valid = META_SET_MODE, .mode = 03755 };
	assert_int_equal(meta_setattr(M, &ALICE, RQ, g, &sa, NULL), 0);
	assert_int_equal(attr(g)->mode, 01755);
	/* chown by the owner to a group of theirs drops S_ISUID */
	static const uint32_t g5[] = { 5555 };
	const struct meta_cred alice5 = { 1000, 1000, 1, g5 };
	sa = (struct meta_setattr){ .valid = META_SET_MODE, .mode = 04755 };
	assert_int_equal(meta_setattr(M, &ALICE, RQ, g, &sa, NULL), 0);
	sa = (struct meta_setattr){ .valid = META_SET_GID, .gid = 5555 };
	assert_int_equal(meta_setattr(M, &alice5, RQ, g, &sa, NULL), 0);
	assert_int_equal(attr(g)->mode, 0755);
	/* a kill on a directory changes nothing */
	uint64_t d = mkdir_(R1, "sgiddir");
	chmod_root(d, 02777);
	assert_int_equal(mode_after(d, &BOB, META_SET_KILL_SUIDGID, 0), 02777);
}


/* LOOKUP_PLUS over PLUS_N files and a subdirectory: every entry with its
 * own inode, and on etcd the entries' inodes in one multi-key read: the
 * whole call takes a few requests, not one per entry. */
#define PLUS_N 100
struct plus_seen {
	int n;
	uint64_t ino[PLUS_N + 1];
	uint32_t mode[PLUS_N + 1];
};

static int plus_seen_fn(void *arg, const struct meta_dirent *de, const struct meta_inode *in)
{
	struct plus_seen *p = arg;
	if (!de) {
		p->n = 0;
		return 0;
	}
	assert_true(p->n <= PLUS_N);
	assert_int_equal(de->ino, in->ino);
	p->ino[p->n] = in->ino;
	p->mode[p->n++] = in->mode & 07777;
	return 0;
}

static void test_lookup_plus_batched(void **state)
{
	(void)state;
	static struct plus_seen p;
	uint64_t d = mkdir_(META_ROOT_INO, "plus"), want[PLUS_N + 1];
	char name[32];
	for (int i = 0; i < PLUS_N; i++) {
		snprintf(name, sizeof(name), "f%03d", i);
		want[i] = mkfile_(&FX_ROOT, d, name, 0600 + (uint32_t)(i % 64));
	}
	want[PLUS_N] = mkdir_(d, "zsub");
	struct etcdc *c = NULL;
	const char *pfx;
	size_t pn;
	struct etcdc_stats s0 = { 0 }, s1 = { 0 };
	if (kv_etcd_client(F.kv, &c, &pfx, &pn) == 0)
		etcdc_get_stats(c, &s0);
	int eof = 0;
	memset(&p, 0, sizeof(p));
	uint64_t t0 = clock_mono_ns();
	assert_int_equal(meta_lookup_plus(M, &FX_ROOT, d, N(""), PLUS_N + 1, plus_seen_fn, &p,
					  &eof), 0);
	uint64_t dt_us = (clock_mono_ns() - t0) / 1000;
	assert_int_equal(p.n, PLUS_N + 1);
	for (int i = 0; i < PLUS_N + 1; i++) {
		assert_int_equal(p.ino[i], want[i]);
		if (i < PLUS_N)
			assert_int_equal(p.mode[i], 0600 + (uint32_t)(i % 64));
	}
	if (c) {
		etcdc_get_stats(c, &s1);
		uint64_t reqs = s1.requests - s0.requests;
		print_message("lookup_plus of %d entries: %llu etcd requests, %llu us\n",
			      PLUS_N + 1, (unsigned long long)reqs, (unsigned long long)dt_us);
		/* dir inode, the listing, the inodes (one txn), zsub's stats */
		assert_true(reqs <= 8);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_special, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_nlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parent_times, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_creates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_setid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookup_plus_batched, setup, teardown),
	};
#ifdef META_POSIX_ETCD
	const char *etcd = "metaposix";
#else
	const char *etcd = NULL;
#endif
	return fx_run_groups("meta posix", tests, sizeof(tests) / sizeof(tests[0]), argc, argv,
			     etcd);
}
