/* test_craq_lock.c - the CRAQ service's small pieces (craq_lock.c): chunk
 * locks hand over FIFO and count grants (what reads use to detect a write
 * that started and ended while they read), the blocking acquire waits for
 * the holder, the exactly-once cache answers only the latest seq of a
 * (client, chain, channel) and stays bounded, and delayed calls run in
 * due order (and all of them, at free). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "common/clock.h"
#include "storage/storage_int.h"

static int order[8];
static int norder;

static void granted(void *arg) { order[norder++] = (int)(intptr_t)arg; }

static void test_lock_fifo(void **state)
{
	(void)state;
	struct craq_locks *l = craq_locks_new();
	struct chunk_id a = { 1, 2 }, b = { 1, 3 };
	uint64_t gen;
	assert_false(craq_lock_peek(l, a, &gen));
	assert_int_equal(gen, 0);
	struct craq_waiter w[3];
	assert_true(craq_lock(l, a, &w[0]));
	assert_true(craq_lock(l, b, &w[0])); /* another chunk: independent */
	for (int i = 1; i < 3; i++) {
		w[i] = (struct craq_waiter){ .fn = granted, .arg = (void *)(intptr_t)i };
		assert_false(craq_lock(l, a, &w[i]));
	}
	assert_true(craq_lock_peek(l, a, &gen));
	assert_int_equal(gen, 1);
	norder = 0;
	craq_unlock(l, a);
	assert_int_equal(norder, 1);
	assert_int_equal(order[0], 1);
	craq_unlock(l, a);
	assert_int_equal(norder, 2);
	assert_int_equal(order[1], 2);
	assert_true(craq_lock_peek(l, a, &gen));
	assert_int_equal(gen, 3);
	craq_unlock(l, a);
	assert_false(craq_lock_peek(l, a, &gen));
	assert_int_equal(gen, 3);
	craq_unlock(l, b);
	craq_locks_free(l);
}

struct holder {
	struct craq_locks *l;
	atomic_int released;
};

static void *release_later(void *arg)
{
	struct holder *h = arg;
	clock_sleep_ms(100);
	atomic_store(&h->released, 1);
	craq_unlock(h->l, (struct chunk_id){ 7, 7 });
	return NULL;
}

static void test_lock_wait(void **state)
{
	(void)state;
	struct holder h = { .l = craq_locks_new() };
	struct craq_waiter w;
	assert_true(craq_lock(h.l, (struct chunk_id){ 7, 7 }, &w));
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, release_later, &h), 0);
	craq_lock_wait(h.l, (struct chunk_id){ 7, 7 });
	assert_int_equal(atomic_load(&h.released), 1);
	pthread_join(th, NULL);
	craq_unlock(h.l, (struct chunk_id){ 7, 7 });
	craq_locks_free(h.l);
}

static void test_dedup(void **state)
{
	(void)state;
	struct craq_dedup *d = craq_dedup_new();
	int st;
	uint8_t resp[64];
	uint32_t len;
	assert_false(craq_dedup_get(d, 1, 2, 3, 4, &st, resp, &len));
	craq_dedup_put(d, 1, 2, 3, 4, 0, (const uint8_t *)"abc", 3);
	assert_int_equal(craq_dedup_get(d, 1, 2, 3, 4, &st, resp, &len), DEDUP_HIT);
	assert_int_equal(st, 0);
	assert_int_equal(len, 3);
	assert_memory_equal(resp, "abc", 3);
	assert_int_equal(craq_dedup_get(d, 1, 2, 3, 5, &st, resp, &len), DEDUP_MISS); /* next */
	assert_false(craq_dedup_get(d, 1, 9, 3, 4, &st, resp, &len)); /* other chain */
	craq_dedup_put(d, 1, 2, 3, 5, 0, (const uint8_t *)"de", 2);
	/* Only the last is answered; an older seq is a late copy, refused. */
	assert_int_equal(craq_dedup_get(d, 1, 2, 3, 4, &st, resp, &len), DEDUP_STALE);
	craq_dedup_put(d, 1, 2, 3, 4, 0, (const uint8_t *)"zz", 2);  /* older: ignored */
	assert_true(craq_dedup_get(d, 1, 2, 3, 5, &st, resp, &len));
	assert_memory_equal(resp, "de", 2);
	/* Bounded: many channels later the first is forgotten, the last kept. */
	for (uint64_t ch = 100; ch < 100 + 4096 * 40; ch++)
		craq_dedup_put(d, 1, 2, ch, 1, 0, (const uint8_t *)"x", 1);
	assert_false(craq_dedup_get(d, 1, 2, 3, 5, &st, resp, &len));
	assert_true(craq_dedup_get(d, 1, 2, 100 + 4096 * 40 - 1, 1, &st, resp, &len));
	craq_dedup_free(d);
}

static atomic_int ran[4];
static atomic_int seqno;

static void mark(void *arg)
{
	int i = (int)(intptr_t)arg;
	atomic_store(&ran[i], atomic_fetch_add(&seqno, 1) + 1);
}

static void test_sched(void **state)
{
	(void)state;
	struct craq_sched *s = craq_sched_new();
	craq_sched_after(s, 150, mark, (void *)(intptr_t)0);
	craq_sched_after(s, 10, mark, (void *)(intptr_t)1);
	craq_sched_after(s, 60, mark, (void *)(intptr_t)2);
	craq_sched_after(s, 60000, mark, (void *)(intptr_t)3);
	uint64_t deadline = clock_mono_ms() + 5000;
	while (!atomic_load(&ran[0]) && clock_mono_ms() < deadline)
		clock_sleep_ms(5);
	assert_int_equal(atomic_load(&ran[1]), 1);
	assert_int_equal(atomic_load(&ran[2]), 2);
	assert_int_equal(atomic_load(&ran[0]), 3);
	assert_int_equal(atomic_load(&ran[3]), 0);
	craq_sched_free(s); /* runs the far one now */
	assert_int_equal(atomic_load(&ran[3]), 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lock_fifo),
		cmocka_unit_test(test_lock_wait),
		cmocka_unit_test(test_dedup),
		cmocka_unit_test(test_sched),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
