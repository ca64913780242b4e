/* test_closer.c - the mount's deferred session closes (fuse/closer.h)
 * over a fake meta that fails on purpose: a failed batch and a failed
 * synchronous close are tried again in the background until one lands
 * (each session once more, with its length), and no more than
 * CLOSER_RETRY_TRIES attempts in all when meta never answers. No mount
 * and no meta. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "fuse/closer.h"

#define RETRY_MS 5

struct fake {
	pthread_mutex_t mu;
	int fail_many;  /* close_many fails while set */
	int fail_known; /* close_known fails this many more times (-1: always) */
	int many_calls, known_calls, known_ok;
	int known_at_many;  /* known_calls when close_many was first called */
	int known_sleep_ms; /* each close_known takes this long (a failover) */
	int known_started;  /* close_known calls begun */
	uint64_t ok_sessions[64];
	struct meta_length ok_len[64];
	int ok_has_len[64];
};

static int fake_many(void *arg, const uint64_t *pairs, int n)
{
	struct fake *f = arg;
	(void)pairs;
	(void)n;
	pthread_mutex_lock(&f->mu);
	if (!f->many_calls)
		f->known_at_many = f->known_calls;
	f->many_calls++;
	int rc = f->fail_many ? -ETIMEDOUT : 0;
	pthread_mutex_unlock(&f->mu);
	return rc;
}

static int fake_known(void *arg, uint64_t ino, uint64_t session, const struct meta_length *len)
{
	struct fake *f = arg;
	(void)ino;
	pthread_mutex_lock(&f->mu);
	f->known_started++;
	int sleep_ms = f->known_sleep_ms;
	pthread_mutex_unlock(&f->mu);
	if (sleep_ms) {
		struct timespec ts = {0, sleep_ms * 1000000L};
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&f->mu);
	f->known_calls++;
	int rc = 0;
	if (f->fail_known) {
		if (f->fail_known > 0)
			f->fail_known--;
		rc = -ETIMEDOUT;
	} else if (f->known_ok < 64) {
		f->ok_sessions[f->known_ok] = session;
		f->ok_has_len[f->known_ok] = len != NULL;
		if (len)
			f->ok_len[f->known_ok] = *len;
		f->known_ok++;
	}
	pthread_mutex_unlock(&f->mu);
	return rc;
}

static closer *fake_closer(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	struct closer_ops ops = {fake_many, fake_known, f};
	closer *c = closer_new_ops(&ops, 50, RETRY_MS);
	assert_non_null(c);
	return c;
}

/* Waits (at most 10 s) until no close waits for a retry. */
static void wait_settled(closer *c)
{
	for (int i = 0; i < 1000 && closer_retries_pending(c); i++) {
		struct timespec ts = {0, 10 * 1000000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(closer_retries_pending(c), 0);
}

static void test_failed_batch_retried(void **state)
{
	struct fake f;
	closer *c = fake_closer(&f);
	f.fail_many = 1;
	f.fail_known = 2; /* the first two retries fail as well */
	for (uint64_t s = 1; s <= 3; s++)
		assert_int_equal(closer_add(c, 100 + s, s), 1);
	closer_flush(c);
	assert_int_equal(f.many_calls, 1);
	wait_settled(c);
	/* every session of the batch closed once, with nothing to report */
	assert_int_equal(f.known_ok, 3);
	assert_int_equal(f.known_calls, 5);
	uint64_t seen = 0;
	for (int i = 0; i < 3; i++) {
		assert_false(f.ok_has_len[i]);
		seen |= 1ull << f.ok_sessions[i];
	}
	assert_true(seen == 0xE);
	closer_free(c);
}

static void test_failed_close_retried_with_length(void **state)
{
	struct fake f;
	closer *c = fake_closer(&f);
	f.fail_known = 3;
	struct meta_length len = {.length = 12345, .truncate_ver = 2};
	assert_int_equal(closer_retry(c, 7, 70, &len, -ETIMEDOUT), 1);
	wait_settled(c);
	assert_int_equal(f.known_calls, 4);
	assert_int_equal(f.known_ok, 1);
	assert_true(f.ok_sessions[0] == 70);
	assert_true(f.ok_has_len[0]);
	assert_true(f.ok_len[0].length == 12345 && f.ok_len[0].truncate_ver == 2);
	closer_free(c);
}

static void test_retries_bounded(void **state)
{
	struct fake f;
	closer *c = fake_closer(&f);
	f.fail_known = -1;
	assert_int_equal(closer_retry(c, 7, 70, NULL, -ETIMEDOUT), 1);
	wait_settled(c);
	/* the caller's attempt was the first */
	assert_int_equal(f.known_calls, CLOSER_RETRY_TRIES - 1);
	/* nothing more comes later */
	struct timespec ts = {0, 300 * 1000000};
	nanosleep(&ts, NULL);
	assert_int_equal(f.known_calls, CLOSER_RETRY_TRIES - 1);
	closer_free(c);
}

/* A close handed over just before closer_free (the mount's last files,
 * closed as it goes) gets one last attempt there, due or not, and lands
 * with its length. Before the fix it was dropped untried (known_calls 0):
 * its length short until meta pruned the session. */
static void test_stop_tries_once_more(void **state)
{
	struct fake f;
	memset(&f, 0, sizeof(f));
	pthread_mutex_init(&f.mu, NULL);
	struct closer_ops ops = {fake_many, fake_known, &f};
	closer *c = closer_new_ops(&ops, 50, 60000); /* no retry due before the stop */
	assert_non_null(c);
	struct meta_length len = {.length = 777, .truncate_ver = 3};
	assert_int_equal(closer_retry(c, 8, 80, &len, -ETIMEDOUT), 1);
	closer_free(c);
	assert_int_equal(f.known_calls, 1);
	assert_int_equal(f.known_ok, 1);
	assert_true(f.ok_sessions[0] == 80);
	assert_true(f.ok_has_len[0] && f.ok_len[0].length == 777);
}

/* ... but with meta still failing, one failed attempt ends it: the rest
 * are dropped, the unmount not held up by a call per close. */
static void test_stop_gives_up_at_first_failure(void **state)
{
	struct fake f;
	memset(&f, 0, sizeof(f));
	pthread_mutex_init(&f.mu, NULL);
	f.fail_known = -1;
	struct closer_ops ops = {fake_many, fake_known, &f};
	closer *c = closer_new_ops(&ops, 50, 60000);
	assert_non_null(c);
	for (uint64_t s = 1; s <= 3; s++)
		assert_int_equal(closer_retry(c, 8, s, NULL, -ETIMEDOUT), 1);
	closer_free(c);
	assert_int_equal(f.known_calls, 1);
	assert_int_equal(f.known_ok, 0);
}

/* Meta down, each call waiting out a failover (100 ms here): of the
 * closes waiting for a retry, one is tried per round, and a batch queued
 * meanwhile goes next, not after every waiting close's call. Before, the
 * thread tried all six due ones (known_at_many 6), 600 ms in all. */
static void test_meta_down_one_call_per_round(void **state)
{
	struct fake f;
	closer *c = fake_closer(&f);
	f.fail_known = -1;
	f.known_sleep_ms = 100;
	for (uint64_t s = 1; s <= 6; s++)
		assert_int_equal(closer_retry(c, 9, s, NULL, -ETIMEDOUT), 1);
	/* the batch comes while the first retry waits on meta */
	for (int i = 0; i < 1000; i++) {
		pthread_mutex_lock(&f.mu);
		int started = f.known_started;
		pthread_mutex_unlock(&f.mu);
		if (started)
			break;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(closer_add(c, 200, 20), 1);
	closer_flush(c);
	pthread_mutex_lock(&f.mu);
	int before = f.known_at_many;
	f.fail_known = 0; /* meta is back */
	f.known_sleep_ms = 0;
	pthread_mutex_unlock(&f.mu);
	print_message("close_known calls before the batch: %d\n", before);
	assert_true(before >= 1 && before <= 2);
	wait_settled(c);
	assert_int_equal(f.known_ok, 6); /* none dropped on the way */
	closer_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_failed_batch_retried),
	    cmocka_unit_test(test_failed_close_retried_with_length),
	    cmocka_unit_test(test_retries_bounded),
	    cmocka_unit_test(test_stop_tries_once_more),
	    cmocka_unit_test(test_stop_gives_up_at_first_failure),
	    cmocka_unit_test(test_meta_down_one_call_per_round),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
