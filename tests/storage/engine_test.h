/* engine_test.h - pieces the chunk engine's unit tests share
 * (test_chunk_engine.c, test_chunk_journal.c): the byte pattern, the
 * allocator check, and waiting for asynchronous ops. Include after
 * cmocka.h. */
#ifndef CFS_TESTS_ENGINE_TEST_H
#define CFS_TESTS_ENGINE_TEST_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/chunk_engine.h"

/* N bytes of a pseudo-random pattern of SEED at P. */
static inline void fill(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

/* E's allocator agrees with its metadata: WANT_CHUNKS chunks, no block
 * leaked or held twice. */
static inline void assert_clean(struct chunk_engine *e, uint64_t want_chunks)
{
	uint64_t chunks, leaked, doubled;
	assert_int_equal(chunk_engine_check(e, &chunks, &leaked, &doubled), 0);
	assert_int_equal(chunks, want_chunks);
	assert_int_equal(leaked, 0);
	assert_int_equal(doubled, 0);
}

/* Ops submitted with async_done and an async_ctx as their arg. */
struct async_ctx {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done, failed;
};

#define ASYNC_CTX_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 }

static inline void async_done(struct chunk_op *op)
{
	struct async_ctx *c = op->arg;
	pthread_mutex_lock(&c->mu);
	c->done++;
	c->failed += op->result < 0;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

/* OP as a write (chain version 1) of LEN bytes of DATA at OFF of chunk
 * ID, counted in C when done; not submitted. */
static inline void async_write_op(struct chunk_op *op, struct async_ctx *c, struct chunk_id id,
				  uint32_t off, uint32_t len, const uint8_t *data)
{
	*op = (struct chunk_op){ .type = CHUNK_OP_WRITE, .done = async_done, .arg = c, .id = id,
				 .off = off, .len = len, .data = data, .chain_ver = 1 };
}

/* Waits until N ops counted in C are done; how many of them failed. */
static inline int async_wait(struct async_ctx *c, int n)
{
	pthread_mutex_lock(&c->mu);
	while (c->done < n)
		pthread_cond_wait(&c->cv, &c->mu);
	int failed = c->failed;
	pthread_mutex_unlock(&c->mu);
	return failed;
}

#endif
