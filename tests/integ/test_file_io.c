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
 * several threads writing disjoint ranges of one file; reads cut at
 * read_piece inside chunks (through the worker pool and through a
 * read_batch backend), with holes, short chunks and a failing piece;
 * write-behind (order per chunk, reads after it, errors at drain);
 * read-ahead (sequential reads served from units fetched ahead; a file
 * rewritten through another file_io is never served stale to a
 * sequential reader once read_ahead_ttl_ms passed, and this file_io's own
 * writes are seen at once); small files read at random (git's
 * index-pack): from the second small random read on, the whole file comes
 * in one unit and later reads cost no request, under the same staleness
 * bound and write drops; a big file's random reads fetch nothing extra;
 * file_io_read_async_ref hands a read one unit holds whole over by
 * reference, and those bytes stay put through a write that drops the unit
 * and through the release of the inode, until file_io_read_unref; a
 * read-ahead unit that fails while two readers wait for it is freed once,
 * after both are done with it.
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
#include <time.h>

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
	int hold;            /* writes wait while set (write-behind tests) */
	int rhold;           /* reads wait while set ... */
	int rfail;           /* ... and then fail with -EIO while this is set */
	int ra_waits;        /* file_io_opts.ra_wait calls (fake_ra_wait) */
	pthread_cond_t cv;   /* hold or rhold cleared, ra_waits went up */
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
	while (f->rhold)
		pthread_cond_wait(&f->cv, &f->lock);
	if (f->rfail) {
		pthread_mutex_unlock(&f->lock);
		return -EIO; /* as a storage target that was killed */
	}
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
	while (f->hold)
		pthread_cond_wait(&f->cv, &f->lock);
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

/* Removes the chunks in [BEGIN, END) that CHAIN holds (the chain a chunk
 * was last written through), as a storage chain would. */
static int fake_remove(void *arg, uint32_t chain, uint64_t ino, uint32_t begin, uint32_t end)
{
	struct fake *f = arg;
	pthread_mutex_lock(&f->lock);
	f->requests++;
	for (uint32_t i = begin; i < end && i < NCH; i++)
		if (f->data[i] && f->chain[i] == chain) {
			free(f->data[i]);
			f->data[i] = NULL;
			f->len[i] = 0;
		}
	pthread_mutex_unlock(&f->lock);
	return 0;
}

/* read_batch over fake_read, counting calls and pieces. */
static int batch_calls, batch_pieces;

static int fake_read_batch(void *arg, struct file_io_piece *p, size_t n)
{
	batch_calls++;
	batch_pieces += (int)n;
	for (size_t i = 0; i < n; i++)
		p[i].result = fake_read(arg, p[i].chain, p[i].ino, p[i].index, p[i].off, p[i].len,
		                        p[i].buf);
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
	pthread_cond_init(&c->fk.cv, NULL);
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
	pthread_cond_destroy(&c->fk.cv);
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
	/* A second open shares the state; a newer truncate_ver starts the
	 * written end over and takes meta's size, but the end written before
	 * and not reported is still reported, under the old truncate_ver
	 * (meta counts of it what storage holds past the cut), until meta
	 * acknowledged it. */
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
	assert_int_equal(file_io_length_unreported(fi, &len), 1);
	assert_int_equal(file_io_length(fi, &len), 1);
	assert_int_equal(len.truncate_ver, 0);
	assert_int_equal(len.length, CS);
	assert_int_equal(file_io_settled(fi), 0);
	file_io_length_reported(fi, &len);
	assert_int_equal(file_io_length_unreported(fi, &len), 0);
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

/* Reads of an idle file_io are cut every read_piece bytes inside a chunk;
 * each piece zero-fills past the chunk's end on its own. */
static void test_read_pieces(void **state)
{
	struct ctx *c = *state;
	char err[256];
	for (int batched = 0; batched < 2; batched++) {
		file_io *fio;
		file_io_inode *fi;
		struct file_io_opts o = {
		    .backend = {.arg = &c->fk, .read = fake_read, .write = fake_write},
		    .workers = 3,
		    .read_piece = CS / 4,
		};
		if (batched)
			o.backend.read_batch = fake_read_batch;
		assert_int_equal(file_io_new(&o, &fio, err, sizeof(err)), 0);
		c->in.ino = 90 + (uint64_t)batched;
		c->in.size = 0;
		assert_int_equal(file_io_open(fio, &c->in, &fi), 0);
		/* Chunk 0 whole, chunk 1 absent (a hole), chunk 2 ends 100 bytes
		 * into its third piece. */
		static uint8_t w[3 * CS], r[3 * CS];
		pattern(w, sizeof(w), 5 + (unsigned)batched);
		memset(w + CS, 0, CS);
		memset(w + 2 * CS + CS / 2 + 100, 0, CS / 2 - 100);
		assert_int_equal(file_io_write(fio, fi, 0, CS, w), CS);
		assert_int_equal(file_io_write(fio, fi, 2 * CS, CS / 2 + 100, w + 2 * CS),
		                 CS / 2 + 100);
		struct meta_inode in2 = c->in;
		in2.size = 3 * CS; /* another client wrote the rest: a short chunk */
		file_io_update(fi, &in2);
		batch_calls = batch_pieces = 0;
		int before = c->fk.requests;
		memset(r, 0xEE, sizeof(r));
		assert_int_equal(file_io_read(fio, fi, 0, sizeof(r), r), (ssize_t)sizeof(r));
		assert_memory_equal(r, w, sizeof(r));
		/* 4 pieces per chunk; the hole's pieces still ask (and get 0). */
		assert_int_equal(c->fk.requests - before, 12);
		assert_int_equal(batch_calls, batched ? 1 : 0);
		assert_int_equal(batch_pieces, batched ? 12 : 0);
		/* An unaligned read inside one chunk: pieces end on boundaries. */
		memset(r, 0xEE, sizeof(r));
		assert_int_equal(file_io_read(fio, fi, CS / 4 - 3, CS / 2, r), CS / 2);
		assert_memory_equal(r, w + CS / 4 - 3, CS / 2);
		/* One failing piece fails the read. */
		c->fk.fail_index = 2;
		assert_int_equal(file_io_read(fio, fi, 0, sizeof(r), r), -EIO);
		c->fk.fail_index = -1;
		file_io_release(fio, fi);
		file_io_free(fio);
	}
}

static void hold_writes(struct fake *f, int on)
{
	pthread_mutex_lock(&f->lock);
	f->hold = on;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->lock);
}

struct wb_th {
	file_io *fio;
	file_io_inode *fi;
	const uint8_t *buf;
	ssize_t rc;
};

static void *wb_writer(void *v)
{
	struct wb_th *t = v;
	t->rc = file_io_write_behind(t->fio, t->fi, 100, CS / 2, t->buf);
	return NULL;
}

/* Write-behind returns before the data lands; size counts it, the reported
 * length does not; a second write of the same chunk waits for the first
 * (the chain head must see them in order); reads wait for it; a failure
 * comes back from later writes and once from drain. */
static void test_write_behind(void **state)
{
	struct ctx *c = *state;
	char err[256];
	file_io *fio;
	file_io_inode *fi;
	struct file_io_opts o = {
	    .backend = {.arg = &c->fk, .read = fake_read, .write = fake_write},
	    .workers = 3,
	    .write_behind = 2 * CS,
	};
	assert_int_equal(file_io_new(&o, &fio, err, sizeof(err)), 0);
	c->in.ino = 95;
	assert_int_equal(file_io_open(fio, &c->in, &fi), 0);
	static uint8_t a[CS], b[CS], r[CS];
	pattern(a, sizeof(a), 1);
	pattern(b, sizeof(b), 2);
	hold_writes(&c->fk, 1);
	assert_int_equal(file_io_write_behind(fio, fi, 100, CS / 2, a), CS / 2);
	assert_int_equal(file_io_size(fi), 100 + CS / 2);
	struct meta_length len;
	assert_int_equal(file_io_length(fi, &len), 0); /* nothing landed yet */
	assert_null(c->fk.data[0]);
	struct wb_th t = {fio, fi, b, 0};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, wb_writer, &t), 0);
	hold_writes(&c->fk, 0);
	pthread_join(th, NULL);
	assert_int_equal(t.rc, CS / 2);
	assert_int_equal(file_io_read(fio, fi, 100, CS / 2, r), CS / 2);
	assert_memory_equal(r, b, CS / 2); /* the later write won */
	assert_int_equal(file_io_drain(fi), 0);
	assert_int_equal(file_io_length(fi, &len), 1);
	assert_int_equal(len.length, 100 + CS / 2);
	/* A failing write-behind write: a read of its range waits for it; it
	 * never counts in the size; later write-behind calls return its error
	 * until a drain reports it, once. */
	c->fk.fail_index = 3;
	assert_int_equal(file_io_write_behind(fio, fi, 3 * CS, 10, a), 10);
	assert_int_equal(file_io_read(fio, fi, 3 * CS, 10, r), 0);
	assert_int_equal(file_io_size(fi), 100 + CS / 2);
	assert_int_equal(file_io_write_behind(fio, fi, 0, 10, a), -EIO);
	assert_int_equal(file_io_drain(fi), -EIO);
	assert_int_equal(file_io_drain(fi), 0);
	c->fk.fail_index = -1;
	assert_int_equal(file_io_write_behind(fio, fi, 0, 10, a), 10);
	assert_int_equal(file_io_drain(fi), 0);
	file_io_release(fio, fi);
	file_io_free(fio);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Which of the two patterns (1 or 2) R holds for file offset OFF, or 0. */
static int which(const uint8_t *r, size_t n, uint64_t off, const uint8_t *p1, const uint8_t *p2)
{
	if (!memcmp(r, p1 + off, n))
		return 1;
	if (!memcmp(r, p2 + off, n))
		return 2;
	return 0;
}

/* Options of a file_io over C's fake backend: 4 workers, 2 MiB of
 * read-ahead whose units serve reads for TTL_MS. */
static struct file_io_opts ra_opts(struct ctx *c, uint32_t ttl_ms)
{
	return (struct file_io_opts){
	    .backend = {.arg = &c->fk, .read = fake_read, .write = fake_write},
	    .workers = 4,
	    .read_ahead = 2 << 20,
	    .read_ahead_ttl_ms = ttl_ms,
	};
}

/* Opens C's inode, as inode INO of size 0, in F. */
static file_io_inode *open_empty(struct ctx *c, file_io *f, uint64_t ino)
{
	file_io_inode *fi;
	c->in.ino = ino;
	c->in.size = 0;
	assert_int_equal(file_io_open(f, &c->in, &fi), 0);
	return fi;
}

/* READ-AHEAD COHERENCE. Reader A and writer B are two file_io instances
 * (two mounts) over one backend. A reads a 3 MiB file sequentially in
 * CS pieces: some reads must be served without a backend request (the
 * read-ahead works). B rewrites the whole file. A's reads right after may
 * still be old (within the bound), each wholly old or wholly new; once
 * TTL has passed since B's write returned, every read must be new. A's
 * own write ahead of its position is read back at once. */
static void test_read_ahead(void **state)
{
	struct ctx *c = *state;
	char err[256];
	const uint32_t ttl = 200;
	const size_t size = 48 * (size_t)CS; /* 3 MiB: three read-ahead units */
	file_io *A, *B;
	file_io_inode *fa, *fb;
	struct file_io_opts o = ra_opts(c, ttl);
	assert_int_equal(file_io_new(&o, &A, err, sizeof(err)), 0);
	assert_int_equal(file_io_new(&o, &B, err, sizeof(err)), 0);
	fb = open_empty(c, B, 96);
	uint8_t *p1 = malloc(size), *p2 = malloc(size), *r = malloc(CS);
	pattern(p1, size, 11);
	pattern(p2, size, 12);
	assert_int_equal(file_io_write(B, fb, 0, size, p1), (ssize_t)size);
	c->in.size = size;
	assert_int_equal(file_io_open(A, &c->in, &fa), 0);
	uint64_t pos = 0;
	int from_cache = 0;
	for (int k = 0; k < 8; k++, pos += CS) {
		pthread_mutex_lock(&c->fk.lock);
		int before = c->fk.requests;
		pthread_mutex_unlock(&c->fk.lock);
		assert_int_equal(file_io_read(A, fa, pos, CS, r), CS);
		assert_memory_equal(r, p1 + pos, CS);
		pthread_mutex_lock(&c->fk.lock);
		from_cache += c->fk.requests == before;
		pthread_mutex_unlock(&c->fk.lock);
		sleep_ms(5); /* let the units land */
	}
	assert_true(from_cache > 0);
	/* Another mount rewrites the file. */
	assert_int_equal(file_io_write(B, fb, 0, size, p2), (ssize_t)size);
	uint64_t written = now_ms();
	int old_reads = 0, new_reads = 0;
	for (; pos < size; pos += CS) {
		uint64_t t = now_ms();
		assert_int_equal(file_io_read(A, fa, pos, CS, r), CS);
		int w = which(r, CS, pos, p1, p2);
		assert_int_not_equal(w, 0);                   /* never a torn piece */
		if (t > written + ttl)
			assert_int_equal(w, 2);                 /* the staleness bound */
		old_reads += w == 1;
		new_reads += w == 2;
		if (pos == 24 * (uint64_t)CS)
			sleep_ms(ttl + 50);
	}
	assert_true(new_reads > 0);
	/* Own writes: A writes ahead of a fresh sequential pass, reads it. */
	assert_int_equal(file_io_read(A, fa, 0, CS, r), CS); /* a seek: restart */
	assert_int_equal(file_io_read(A, fa, CS, CS, r), CS);
	sleep_ms(5);
	assert_int_equal(file_io_write(A, fa, 3 * CS, CS, p1 + 3 * CS), CS);
	assert_int_equal(file_io_read(A, fa, 2 * CS, CS, r), CS);
	assert_memory_equal(r, p2 + 2 * CS, CS);
	assert_int_equal(file_io_read(A, fa, 3 * CS, CS, r), CS);
	assert_memory_equal(r, p1 + 3 * CS, CS);
	/* Two sequential readers of the one inode, interleaved (as two fio
	 * jobs on one file): each keeps its stream; both are served from
	 * units and read the right bytes. */
	int cached2[2] = {0, 0};
	uint64_t at[2] = {4 * (uint64_t)CS, 26 * (uint64_t)CS};
	for (int k = 0; k < 16; k++) {
		for (int s2 = 0; s2 < 2; s2++) {
			pthread_mutex_lock(&c->fk.lock);
			int before = c->fk.requests;
			pthread_mutex_unlock(&c->fk.lock);
			uint8_t *want = at[s2] == 3 * (uint64_t)CS ? p1 : p2;
			assert_int_equal(file_io_read(A, fa, at[s2], CS, r), CS);
			assert_memory_equal(r, want + at[s2], CS);
			pthread_mutex_lock(&c->fk.lock);
			cached2[s2] += c->fk.requests == before;
			pthread_mutex_unlock(&c->fk.lock);
			at[s2] += CS;
		}
		sleep_ms(5);
	}
	assert_true(cached2[0] > 0 && cached2[1] > 0);
	print_message("read-ahead: %d reads from units, after rewrite %d old %d new; "
	              "two streams %d + %d from units\n",
	              from_cache, old_reads, new_reads, cached2[0], cached2[1]);
	file_io_release(A, fa);
	file_io_release(B, fb);
	file_io_free(A);
	file_io_free(B);
	free(p1);
	free(p2);
	free(r);
}

static int fake_requests(struct fake *fk)
{
	pthread_mutex_lock(&fk->lock);
	int n = fk->requests;
	pthread_mutex_unlock(&fk->lock);
	return n;
}

struct ref_read {
	ssize_t n;
	int calls;
};

static void ref_done(void *arg, ssize_t n)
{
	struct ref_read *x = arg;
	x->n = n;
	x->calls++;
}

/* The fake's async read: synchronous, then DONE (as a page-cache hit). */
static int fake_read_async(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t off,
                           uint32_t len, void *buf, void (*done)(void *darg, int rc), void *darg)
{
	done(darg, fake_read(arg, chain, ino, index, off, len, buf));
	return 0;
}

/* READ HINTS (file_io_read_wont_wait, the mount's READ): the size is
 * file_io_size's; a small read inside one piece of a large file goes
 * async without a wait (1), one across a piece does not (0), nor one
 * continuing a sequential stream with units about; random reads of a
 * large file (no references taken: the prelude's one-lock path) return
 * the right bytes and leave read-ahead working for a sequential reader
 * after them. */
static void test_read_hints(void **state)
{
	struct ctx *c = *state;
	char err[256];
	const size_t size = 48 * (size_t)CS; /* 3 MiB: larger than a whole-file unit */
	file_io *A;
	file_io_inode *fa;
	struct file_io_opts o = ra_opts(c, 10000);
	o.backend.read_async = fake_read_async;
	assert_int_equal(file_io_new(&o, &A, err, sizeof(err)), 0);
	fa = open_empty(c, A, 99);
	uint8_t *p1 = malloc(size), r[4096];
	pattern(p1, size, 31);
	assert_int_equal(file_io_write(A, fa, 0, size, p1), (ssize_t)size);
	uint64_t sz = 0;
	assert_int_equal(file_io_read_wont_wait(A, fa, 5 * CS + 4096, 4096, &sz), 1);
	assert_int_equal(sz, file_io_size(fa));
	assert_int_equal(sz, size);
	assert_int_equal(file_io_read_wont_wait(A, fa, 2 * CS - 100, 4096, &sz), 0);
	unsigned seed = 9;
	for (int k = 0; k < 200; k++) {
		seed = seed * 1103515245u + 12345u;
		uint64_t off = 4096 + (uint64_t)((seed >> 4) % (size / 4096 - 2)) * 4096;
		struct ref_read x = {0, 0};
		const void *data;
		void *hold;
		file_io_read_async_ref(A, fa, off, 4096, r, &data, &hold, ref_done, &x);
		assert_int_equal(x.calls, 1);
		assert_int_equal(x.n, 4096);
		assert_memory_equal(data, p1 + off, 4096);
		file_io_read_unref(A, hold);
	}
	/* a sequential reader after them: its units serve some reads */
	int from_units = 0;
	uint8_t *big = malloc(CS);
	for (uint64_t pos = 0; pos < 16 * (uint64_t)CS; pos += CS) {
		int before = fake_requests(&c->fk);
		assert_int_equal(file_io_read(A, fa, pos, CS, big), CS);
		assert_memory_equal(big, p1 + pos, CS);
		from_units += fake_requests(&c->fk) == before;
		sleep_ms(5); /* let the units land */
	}
	free(big);
	assert_true(from_units > 0);
	/* continuing the stream: it may wait for a unit, unless one holds it */
	int w = file_io_read_wont_wait(A, fa, 16 * (uint64_t)CS, CS, &sz);
	assert_int_equal(w, file_io_read_cached_range(A, fa, 16 * (uint64_t)CS, CS));
	file_io_release(A, fa);
	file_io_free(A);
	free(p1);
}

/* READ-AHEAD BY REFERENCE (the mount's FUSE replies): sequential reads
 * through file_io_read_async_ref; those a finished unit holds whole point
 * into it (no copy) and are right; a held unit survives this file_io's
 * own write over it (which drops it from later reads: the next read sees
 * the new bytes) and the inode's release, and goes at the last unref
 * (ASan sees any use after free). */
static void test_read_ahead_ref(void **state)
{
	struct ctx *c = *state;
	char err[256];
	const size_t size = 48 * (size_t)CS;
	file_io *A;
	file_io_inode *fa;
	struct file_io_opts o = ra_opts(c, 10000);
	assert_int_equal(file_io_new(&o, &A, err, sizeof(err)), 0);
	fa = open_empty(c, A, 97);
	uint8_t *p1 = malloc(size), *p2 = malloc(size), *r = malloc(CS);
	pattern(p1, size, 21);
	pattern(p2, size, 22);
	assert_int_equal(file_io_write(A, fa, 0, size, p1), (ssize_t)size);
	int by_ref = 0;
	void *kept = NULL;
	const uint8_t *kept_data = NULL;
	uint64_t kept_off = 0, pos = 0;
	for (int k = 0; k < 12; k++, pos += CS) {
		struct ref_read x = {0, 0};
		const void *data;
		void *hold;
		file_io_read_async_ref(A, fa, pos, CS, r, &data, &hold, ref_done, &x);
		file_io_wait_reads(A);
		assert_int_equal(x.calls, 1);
		assert_int_equal(x.n, CS);
		assert_memory_equal(data, p1 + pos, CS);
		if (hold) {
			assert_ptr_not_equal(data, r);
			by_ref++;
			if (!kept) {
				kept = hold;
				kept_data = data;
				kept_off = pos;
				continue;
			}
		} else {
			assert_ptr_equal(data, r);
		}
		file_io_read_unref(A, hold);
		sleep_ms(5); /* let the units land */
	}
	assert_true(by_ref > 0);
	assert_non_null(kept);
	/* Overwrite the held bytes: later reads see the new ones, the held
	 * reply still the bytes it was served. */
	assert_int_equal(file_io_write(A, fa, kept_off, CS, p2 + kept_off), CS);
	assert_int_equal(file_io_read(A, fa, kept_off, CS, r), CS);
	assert_memory_equal(r, p2 + kept_off, CS);
	assert_memory_equal(kept_data, p1 + kept_off, CS);
	file_io_release(A, fa);
	assert_memory_equal(kept_data, p1 + kept_off, CS);
	file_io_read_unref(A, kept);
	file_io_read_unref(A, NULL);
	print_message("read-ahead by reference: %d of 12 reads\n", by_ref);
	file_io_free(A);
	free(p1);
	free(p2);
	free(r);
}

/* A small file read at random in tiny pieces (git's index-pack resolving
 * the pack it wrote): after the second such read the whole file is one
 * unit and the reads cost the backend nothing more; every byte is right;
 * another file_io's rewrite is seen once the TTL passed, this file_io's
 * own write at once; a file above the bound gets no whole-file fetch. */
static void test_read_small_random(void **state)
{
	struct ctx *c = *state;
	char err[256];
	const uint32_t ttl = 200;
	const size_t size = 10 * (size_t)CS + 123; /* 640 KiB: under the 1 MiB bound */
	file_io *A, *B;
	file_io_inode *fa, *fb;
	struct file_io_opts o = ra_opts(c, ttl);
	assert_int_equal(file_io_new(&o, &A, err, sizeof(err)), 0);
	assert_int_equal(file_io_new(&o, &B, err, sizeof(err)), 0);
	fb = open_empty(c, B, 97);
	uint8_t *p1 = malloc(size), *p2 = malloc(size), r[64];
	pattern(p1, size, 21);
	pattern(p2, size, 22);
	assert_int_equal(file_io_write(B, fb, 0, size, p1), (ssize_t)size);
	c->in.size = size;
	assert_int_equal(file_io_open(A, &c->in, &fa), 0);
	unsigned seed = 5;
	int before = fake_requests(&c->fk);
	for (int k = 0; k < 300; k++) {
		seed = seed * 1103515245u + 12345u;
		uint64_t off = 1 + (seed >> 4) % (size - 64); /* never 0: no stream starts there */
		assert_int_equal(file_io_read(A, fa, off, 40, r), 40);
		assert_memory_equal(r, p1 + off, 40);
	}
	int used = fake_requests(&c->fk) - before;
	/* one plain read, then the whole file: 11 chunks */
	assert_true(used <= 1 + 11 + 2);
	uint64_t off = 1 + (size - 64) / 2;
	assert_true(file_io_read_cached_range(A, fa, off, 40));
	/* Another mount rewrites the file: within the TTL old or new, after
	 * it new, and never a mix inside one read. */
	assert_int_equal(file_io_write(B, fb, 0, size, p2), (ssize_t)size);
	uint64_t written = now_ms();
	for (int k = 0; k < 40; k++) {
		uint64_t t = now_ms();
		seed = seed * 1103515245u + 12345u;
		off = 1 + (seed >> 4) % (size - 64);
		assert_int_equal(file_io_read(A, fa, off, 40, r), 40);
		int old = !memcmp(r, p1 + off, 40), nw = !memcmp(r, p2 + off, 40);
		assert_true(old || nw);
		if (t > written + ttl)
			assert_true(nw);
		if (k == 20)
			sleep_ms(ttl + 50);
	}
	/* Own write: seen by the next read at once. */
	assert_int_equal(file_io_write(A, fa, 1000, 40, p1 + 1000), 40);
	assert_false(file_io_read_cached_range(A, fa, 1000, 40));
	assert_int_equal(file_io_read(A, fa, 1000, 40, r), 40);
	assert_memory_equal(r, p1 + 1000, 40);
	file_io_release(A, fa);
	file_io_release(B, fb);
	/* Above the bound: each random read is one request, nothing more. */
	const size_t big = 20 * (size_t)CS; /* 1.25 MiB */
	uint8_t *pb = malloc(big);
	pattern(pb, big, 23);
	fb = open_empty(c, B, 98);
	assert_int_equal(file_io_write(B, fb, 0, big, pb), (ssize_t)big);
	c->in.size = big;
	assert_int_equal(file_io_open(A, &c->in, &fa), 0);
	before = fake_requests(&c->fk);
	for (int k = 0; k < 20; k++) {
		off = 1 + (uint64_t)k * 61231 % (big - 64);
		assert_int_equal(file_io_read(A, fa, off, 40, r), 40);
		assert_memory_equal(r, pb + off, 40);
	}
	assert_int_equal(fake_requests(&c->fk) - before, 20);
	print_message("small file read at random: 300 reads cost %d requests\n", used);
	file_io_release(A, fa);
	file_io_release(B, fb);
	file_io_free(A);
	file_io_free(B);
	free(p1);
	free(p2);
	free(pb);
}

static void fake_ra_wait(void *arg)
{
	struct fake *f = arg;
	pthread_mutex_lock(&f->lock);
	f->ra_waits++;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->lock);
}

/* Waits (10 s at most) until N readers in all started waiting for a
 * read-ahead unit in flight; 1 when they did. */
static int wait_ra_waits(struct fake *f, int n)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 10;
	pthread_mutex_lock(&f->lock);
	while (f->ra_waits < n && pthread_cond_timedwait(&f->cv, &f->lock, &dl) == 0)
		;
	int ok = f->ra_waits >= n;
	pthread_mutex_unlock(&f->lock);
	return ok;
}

struct rd_th {
	file_io *fio;
	file_io_inode *fi;
	uint64_t off;
	uint8_t buf[64];
	ssize_t rc;
};

static void *rd_reader(void *v)
{
	struct rd_th *t = v;
	t->rc = file_io_read(t->fio, t->fi, t->off, 40, t->buf);
	return NULL;
}

/* A READ-AHEAD UNIT FAILS WHILE TWO READERS WAIT FOR IT (the storage
 * target was killed under the mount's reads). A small file read at random
 * gets a whole-file unit; its fetch is held in the backend until reader 1
 * (whose read launched it) and reader 2 both wait for it (the ra_wait
 * hook says when), then fails. The reader that wakes first drops the
 * failed unit; the other one must not touch it freed (ASan reports a
 * heap-use-after-free there without the unit's waiters count). Both
 * reads fail as the storage does, nothing leaks (LeakSanitizer), and once
 * the storage is back a read gets the right bytes. */
static void test_read_ahead_fail_waiters(void **state)
{
	struct ctx *c = *state;
	char err[256];
	const size_t size = 10 * (size_t)CS; /* under the 1 MiB whole-file bound */
	file_io *A;
	file_io_inode *fa;
	struct file_io_opts o = ra_opts(c, 60000); /* the unit never expires under the readers */
	o.ra_wait = fake_ra_wait;
	o.ra_wait_arg = &c->fk;
	assert_int_equal(file_io_new(&o, &A, err, sizeof(err)), 0);
	fa = open_empty(c, A, 99);
	uint8_t *p = malloc(size), r[64];
	pattern(p, size, 31);
	assert_int_equal(file_io_write(A, fa, 0, size, p), (ssize_t)size);
	/* The first small random read goes to storage; the second launches
	 * the whole-file unit and waits for it. */
	assert_int_equal(file_io_read(A, fa, 1000, 40, r), 40);
	assert_memory_equal(r, p + 1000, 40);
	pthread_mutex_lock(&c->fk.lock);
	c->fk.rhold = 1;
	c->fk.rfail = 1;
	pthread_mutex_unlock(&c->fk.lock);
	struct rd_th t1 = {A, fa, 5 * CS + 7, {0}, 0}, t2 = {A, fa, 8 * CS + 3, {0}, 0};
	pthread_t th1, th2;
	assert_int_equal(pthread_create(&th1, NULL, rd_reader, &t1), 0);
	assert_true(wait_ra_waits(&c->fk, 1));
	assert_int_equal(pthread_create(&th2, NULL, rd_reader, &t2), 0);
	assert_true(wait_ra_waits(&c->fk, 2));
	/* Both wait for the one unit: its pieces fail now. */
	pthread_mutex_lock(&c->fk.lock);
	c->fk.rhold = 0;
	pthread_cond_broadcast(&c->fk.cv);
	pthread_mutex_unlock(&c->fk.lock);
	pthread_join(th1, NULL);
	pthread_join(th2, NULL);
	assert_int_equal(t1.rc, -EIO);
	assert_int_equal(t2.rc, -EIO);
	assert_int_equal(c->fk.ra_waits, 2);
	/* Storage back: the failed unit is gone, the bytes come right. */
	pthread_mutex_lock(&c->fk.lock);
	c->fk.rfail = 0;
	pthread_mutex_unlock(&c->fk.lock);
	assert_int_equal(file_io_read(A, fa, 5 * CS + 7, 40, r), 40);
	assert_memory_equal(r, p + 5 * CS + 7, 40);
	assert_int_equal(file_io_read(A, fa, 3 * CS + 1, 40, r), 40);
	assert_memory_equal(r, p + 3 * CS + 1, 40);
	file_io_release(A, fa);
	file_io_free(A);
	free(p);
}

/* fallocate's PUNCH_HOLE / ZERO_RANGE (file_io_punch): the range reads
 * as zeros, the bytes around it are kept, the size does not change, the
 * chunks wholly inside are gone from storage except the one holding the
 * last byte (storage reports the file's end from it), and without a
 * backend remove the same range is zeroed by writes. */
static void test_punch(void **state)
{
	struct ctx *c = *state;
	char err[256];
	file_io *withrm = NULL;
	struct file_io_opts o = {
	    .backend = {.arg = &c->fk, .read = fake_read, .write = fake_write, .remove = fake_remove},
	    .workers = 4,
	};
	assert_int_equal(file_io_new(&o, &withrm, err, sizeof(err)), 0);
	file_io *fios[2] = {withrm, c->fio};
	for (int k = 0; k < 2; k++) {
		file_io_inode *fi;
		c->in.ino = 900 + (uint64_t)k;
		for (int i = 0; i < NCH; i++) {
			free(c->fk.data[i]);
			c->fk.data[i] = NULL;
			c->fk.len[i] = 0;
		}
		assert_int_equal(file_io_open(fios[k], &c->in, &fi), 0);
		const size_t n = 12 * CS + 100; /* chunks 0..12, the last one short */
		uint8_t *w = malloc(n), *r = malloc(n);
		pattern(w, n, 7);
		assert_int_equal(file_io_write(fios[k], fi, 0, n, w), (ssize_t)n);
		/* Punch from inside chunk 2 to the end of the file. */
		const uint64_t off = 2 * CS + 5;
		assert_int_equal(file_io_punch(fios[k], fi, off, n - off), 0);
		memset(w + off, 0, n - off);
		assert_int_equal(file_io_size(fi), n);
		assert_int_equal(file_io_read(fios[k], fi, 0, n, r), (ssize_t)n);
		assert_memory_equal(r, w, n);
		/* Chunks 3..11 went with a backend remove; 2 and 12 stay. */
		for (int i = 3; i <= 11; i++)
			assert_true(k == 0 ? c->fk.data[i] == NULL : c->fk.data[i] != NULL);
		assert_non_null(c->fk.data[2]);
		assert_non_null(c->fk.data[12]);
		assert_int_equal(c->fk.len[12], 100);
		/* A range inside one chunk is zeroed in place. */
		pattern(w, CS, 9);
		assert_int_equal(file_io_write(fios[k], fi, 0, CS, w), (ssize_t)CS);
		assert_int_equal(file_io_punch(fios[k], fi, 10, 20), 0);
		memset(w + 10, 0, 20);
		assert_int_equal(file_io_read(fios[k], fi, 0, CS, r), (ssize_t)CS);
		assert_memory_equal(r, w, CS);
		free(w);
		free(r);
		file_io_release(fios[k], fi);
	}
	file_io_free(withrm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_mapping_and_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors_and_truncate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_pieces, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_behind, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_ahead, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_hints, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_ahead_ref, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_small_random, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_punch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_ahead_fail_waiters, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
