/* test_file_io.c - file_io's range -> chunk mapping against an in-memory
 * backend (no cluster).
 *
 * The fake backend keeps chunks in a table keyed by (ino, index), records
 * which chain each request named, and can fail chosen chunks. Checked:
 * every piece goes to chains[perm[index % stripe]] of the layout (perm
 * from meta_layout_perm); a write split across many chunks lands byte for
 * byte; reads zero-fill holes and short chunks; reads stop at the known
 * size; a backend error fails the call and leaves the written end alone;
 * a newer truncate_ver drops the written end; -EFBIG past chunk 2^32-1;
 * several threads writing disjoint ranges of one file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "client/file_io.h"
#include "meta/layout.h"

#define CS  (64u * 1024) /* chunk size of the test layout */
#define NCH 64           /* chunk slots in the fake */

struct fake {
	pthread_mutex_t lock;
	uint8_t *data[NCH];  /* chunk contents, CS bytes, or NULL when absent */
	uint32_t len[NCH];   /* chunk length */
	uint32_t chain[NCH]; /* chain the last request for the chunk named */
	int fail_index;      /* index whose requests fail with -EIO; -1 none */
	int requests;
};

static int fake_read(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t off,
                     uint32_t len, void *buf)
{
	struct fake *f = arg;
	if ((int)index == f->fail_index)
		return -EIO;
	if (index >= NCH)
		return -EINVAL;
	pthread_mutex_lock(&f->lock);
	f->requests++;
	f->chain[index] = chain;
	int n = 0;
	if (f->data[index] && off < f->len[index]) {
		n = (int)(f->len[index] - off < len ? f->len[index] - off : len);
		memcpy(buf, f->data[index] + off, (size_t)n);
	}
	pthread_mutex_unlock(&f->lock);
	return n;
}

static int fake_write(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t off,
                      uint32_t len, const void *buf, uint32_t chunk_size)
{
	struct fake *f = arg;
	if ((int)index == f->fail_index)
		return -EIO;
	if (index >= NCH || chunk_size != CS || off + len > CS)
		return -EINVAL;
	pthread_mutex_lock(&f->lock);
	f->requests++;
	f->chain[index] = chain;
	if (!f->data[index])
		f->data[index] = calloc(1, CS);
	memcpy(f->data[index] + off, buf, len);
	if (off + len > f->len[index])
		f->len[index] = off + len;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

struct ctx {
	struct fake fk;
	file_io *fio;
	struct meta_inode in;
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	char err[256];
	pthread_mutex_init(&c->fk.lock, NULL);
	c->fk.fail_index = -1;
	struct file_io_opts o = {
	    .backend = {.arg = &c->fk, .read = fake_read, .write = fake_write},
	    .workers = 4,
	};
	assert_int_equal(file_io_new(&o, &c->fio, err, sizeof(err)), 0);
	c->in.ino = 77;
	c->in.type = META_T_FILE;
	c->in.has_layout = 1;
	c->in.layout.chunk_size = CS;
	c->in.layout.stripe = 5;
	c->in.layout.nchains = 5;
	c->in.layout.seed = 42;
	for (int i = 0; i < 5; i++)
		c->in.layout.chains[i] = 1000001 + (uint32_t)i;
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	file_io_free(c->fio);
	for (int i = 0; i < NCH; i++)
		free(c->fk.data[i]);
	pthread_mutex_destroy(&c->fk.lock);
	free(c);
	return 0;
}

static void pattern(uint8_t *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(i * 131 + seed + (i >> 9));
}

static void test_mapping_and_roundtrip(void **state)
{
	struct ctx *c = *state;
	file_io_inode *fi;
	assert_int_equal(file_io_open(c->fio, &c->in, &fi), 0);
	const size_t n = 10 * CS + 999;
	const uint64_t off = 3 * CS - 17;
	uint8_t *w = malloc(n), *r = malloc(n);
	pattern(w, n, 1);
	assert_int_equal(file_io_write(c->fio, fi, off, n, w), (ssize_t)n);
	assert_int_equal(file_io_size(fi), off + n);
	/* Each chunk went to chains[perm[i % stripe]]: perm(42, 5) = [1,2,0,4,3]. */
	static const uint32_t perm42[5] = {1, 2, 0, 4, 3};
	for (uint32_t i = 2; i <= (uint32_t)((off + n - 1) / CS); i++)
		assert_int_equal(c->fk.chain[i], c->in.layout.chains[perm42[i % 5]]);
	memset(r, 0xEE, n);
	assert_int_equal(file_io_read(c->fio, fi, off, n, r), (ssize_t)n);
	assert_memory_equal(r, w, n);
	/* Before OFF: a hole in chunks 0-1 and the head of chunk 2, zeros. */
	uint8_t head[3 * CS];
	memset(head, 0xEE, sizeof(head));
	assert_int_equal(file_io_read(c->fio, fi, 0, sizeof(head), head), (ssize_t)sizeof(head));
	for (size_t i = 0; i < sizeof(head) - 17; i++)
		assert_int_equal(head[i], 0);
	assert_memory_equal(head + sizeof(head) - 17, w, 17);
	/* Reads stop at the size. */
	assert_int_equal(file_io_read(c->fio, fi, off + n - 5, 100, r), 5);
	assert_int_equal(file_io_read(c->fio, fi, off + n, 100, r), 0);
	struct meta_length len;
	assert_int_equal(file_io_length(fi, &len), 1);
	assert_int_equal(len.length, off + n);
	file_io_release(c->fio, fi);
	free(w);
	free(r);
}

static void test_errors_and_truncate(void **state)
{
	struct ctx *c = *state;
	file_io_inode *fi, *again;
	uint8_t buf[3 * CS];
	assert_int_equal(file_io_open(c->fio, &c->in, &fi), 0);
	assert_int_equal(file_io_write(c->fio, fi, 0, CS, buf), CS);
	c->fk.fail_index = 2;
	assert_int_equal(file_io_write(c->fio, fi, CS, sizeof(buf), buf), -EIO);
	assert_int_equal(file_io_size(fi), CS); /* unchanged by the failed write */
	assert_int_equal(file_io_read(c->fio, fi, 0, CS, buf), CS);
	c->fk.fail_index = -1;
	/* Chunk index past 2^32 - 1. */
	assert_int_equal(file_io_write(c->fio, fi, (uint64_t)CS << 32, 10, buf), -EFBIG);
	/* A second open shares the state; a newer truncate_ver drops the
	 * written end and takes meta's size. */
	assert_int_equal(file_io_open(c->fio, &c->in, &again), 0);
	assert_ptr_equal(again, fi);
	assert_ptr_equal(file_io_find(c->fio, c->in.ino), fi);
	file_io_release(c->fio, fi);
	struct meta_inode in2 = c->in;
	in2.truncate_ver = 1;
	in2.size = 10;
	file_io_update(fi, &in2);
	assert_int_equal(file_io_size(fi), 10);
	struct meta_length len;
	assert_int_equal(file_io_length(fi, &len), 0);
	assert_int_equal(len.truncate_ver, 1);
	file_io_release(c->fio, again);
	file_io_release(c->fio, fi);
	assert_null(file_io_find(c->fio, c->in.ino));
	/* Not a file. */
	in2.type = META_T_DIR;
	assert_int_equal(file_io_open(c->fio, &in2, &fi), -EINVAL);
}

struct th {
	struct ctx *c;
	file_io_inode *fi;
	int idx;
	ssize_t rc;
};

static void *writer(void *v)
{
	struct th *t = v;
	uint8_t buf[CS + 100];
	pattern(buf, sizeof(buf), (unsigned)t->idx + 9);
	t->rc = file_io_write(t->c->fio, t->fi, (uint64_t)t->idx * sizeof(buf), sizeof(buf), buf);
	return NULL;
}

static void test_threads(void **state)
{
	struct ctx *c = *state;
	file_io_inode *fi;
	c->in.ino = 78;
	assert_int_equal(file_io_open(c->fio, &c->in, &fi), 0);
	pthread_t t[8];
	struct th a[8];
	for (int i = 0; i < 8; i++) {
		a[i] = (struct th){c, fi, i, 0};
		assert_int_equal(pthread_create(&t[i], NULL, writer, &a[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].rc, CS + 100);
	}
	uint8_t want[CS + 100], got[CS + 100];
	for (int i = 0; i < 8; i++) {
		pattern(want, sizeof(want), (unsigned)i + 9);
		assert_int_equal(
		    file_io_read(c->fio, fi, (uint64_t)i * sizeof(got), sizeof(got), got),
		    (ssize_t)sizeof(got));
		assert_memory_equal(got, want, sizeof(got));
	}
	file_io_release(c->fio, fi);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_mapping_and_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors_and_truncate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
