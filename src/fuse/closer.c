/* closer.c - deferred write-session closes (closer.h).
 *
 * A ring of (ino, session) pairs under one mutex. The thread sleeps until
 * something is queued, then until the batch is full, the first entry's
 * window passed, or someone flushes or stops, and sends what it took
 * outside the lock. add and flush only touch the ring and wake it. */
#include "fuse/closer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"

#define CLOSER_QUEUE_MAX 4096 /* queued closes; past it closes are synchronous */

struct closer {
	meta_client *meta;
	uint64_t window_ns;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* the thread: work, flush or stop */
	pthread_cond_t done_cv; /* flushers: a batch was answered */
	uint64_t ring[2 * CLOSER_QUEUE_MAX];
	size_t head, n;         /* first entry, entries queued */
	uint64_t added, sent;   /* entries ever queued / ever answered */
	uint64_t flush_to;      /* send at once while sent < flush_to */
	uint64_t first_ns;      /* when the oldest queued entry came (mono) */
	int stop;
};

/* Absolute CLOCK_MONOTONIC deadline NS as a timespec. */
static struct timespec ts_of(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
	return ts;
}

static void *closer_main(void *arg)
{
	closer *c = arg;
	uint64_t pairs[2 * META_CLOSE_MANY_MAX];
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (c->n == 0 && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->n == 0)
			break; /* stopping with nothing left */
		uint64_t due = c->first_ns + c->window_ns;
		while (c->n < META_CLOSE_MANY_MAX && !c->stop && c->sent >= c->flush_to &&
		       clock_mono_ns() < due) {
			struct timespec ts = ts_of(due);
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		}
		int k = c->n < META_CLOSE_MANY_MAX ? (int)c->n : META_CLOSE_MANY_MAX;
		for (int i = 0; i < k; i++) {
			size_t at = (c->head + (size_t)i) % CLOSER_QUEUE_MAX;
			pairs[2 * i] = c->ring[2 * at];
			pairs[2 * i + 1] = c->ring[2 * at + 1];
		}
		c->head = (c->head + (size_t)k) % CLOSER_QUEUE_MAX;
		c->n -= (size_t)k;
		/* The entries left came later than the ones sent: their
		 * window starts now at the latest (a bound, not exact). */
		c->first_ns = clock_mono_ns();
		pthread_mutex_unlock(&c->mu);
		int rc = meta_client_close_many(c->meta, pairs, k);
		if (rc < 0)
			LOG_WARN("fuse", "deferred close of %d sessions failed (meta prunes them): %s",
			         k, cfs_strerror(rc));
		pthread_mutex_lock(&c->mu);
		c->sent += (uint64_t)k;
		pthread_cond_broadcast(&c->done_cv);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

closer *closer_new(meta_client *meta, int window_ms)
{
	closer *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->meta = meta;
	c->window_ns = (uint64_t)(window_ms > 0 ? window_ms : 0) * 1000000u;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, &ca);
	pthread_cond_init(&c->done_cv, NULL);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&c->th, NULL, closer_main, c)) {
		pthread_cond_destroy(&c->done_cv);
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		free(c);
		return NULL;
	}
	return c;
}

int closer_add(closer *c, uint64_t ino, uint64_t session)
{
	pthread_mutex_lock(&c->mu);
	if (c->stop || c->n == CLOSER_QUEUE_MAX) {
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	size_t at = (c->head + c->n) % CLOSER_QUEUE_MAX;
	c->ring[2 * at] = ino;
	c->ring[2 * at + 1] = session;
	if (c->n++ == 0) {
		c->first_ns = clock_mono_ns();
		pthread_cond_signal(&c->cv);
	} else if (c->n == META_CLOSE_MANY_MAX) {
		pthread_cond_signal(&c->cv); /* a full batch goes at once */
	}
	c->added++;
	pthread_mutex_unlock(&c->mu);
	return 1;
}

void closer_flush(closer *c)
{
	pthread_mutex_lock(&c->mu);
	uint64_t target = c->added;
	if (c->flush_to < target)
		c->flush_to = target;
	pthread_cond_signal(&c->cv);
	while (c->sent < target)
		pthread_cond_wait(&c->done_cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

void closer_free(closer *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stop = 1; /* the thread sends what is queued, then ends */
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->th, NULL);
	pthread_cond_destroy(&c->done_cv);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}
