/* closer.c - deferred write-session closes (closer.h).
 *
 * A ring of (ino, session) pairs under one mutex. The thread sleeps until
 * something is queued or a retry is due, then until the batch is full,
 * the first entry's window passed, or someone flushes or stops, and sends
 * what it took outside the lock; then the retries that are due, one call
 * each, also outside the lock, until one fails (then the rest wait for
 * that one's next attempt). add, retry and flush only touch the lists
 * and wake it. */
#include "fuse/closer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"

#define CLOSER_QUEUE_MAX 4096 /* queued closes; past it closes are synchronous */
#define CLOSER_RETRY_CAP 30   /* the retry delay grows to this many first delays */

struct retry_ent {
	uint64_t ino, session;
	struct meta_length len;
	int has_len;
	int tries;       /* attempts made */
	uint64_t due_ns; /* mono ns of the next one */
};

struct closer {
	struct closer_ops ops;
	uint64_t window_ns;
	uint64_t retry_ns; /* the first retry's delay */
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* the thread: work, flush or stop */
	pthread_cond_t done_cv; /* flushers: a batch was answered */
	uint64_t ring[2 * CLOSER_QUEUE_MAX];
	size_t head, n;                           /* first entry, entries queued */
	uint64_t added, sent;                     /* entries ever queued / ever answered */
	uint64_t flush_to;                        /* send at once while sent < flush_to */
	uint64_t first_ns;                        /* when the oldest queued entry came (mono) */
	struct retry_ent retry[CLOSER_RETRY_MAX]; /* failed closes, unordered */
	int nretry;
	int retrying; /* taken out of retry[] for the call in flight */
	int stop;
};

/* Absolute CLOCK_MONOTONIC deadline NS as a timespec. */
static struct timespec ts_of(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
	return ts;
}

/* Queues a failed close for its next attempt (after TRIES attempts); the
 * lock held. Past the bound or the capacity it is dropped. */
static void retry_later(closer *c, const struct retry_ent *e0, int tries, int rc)
{
	struct retry_ent e = *e0;
	e.tries = tries;
	if (tries >= CLOSER_RETRY_TRIES || c->nretry == CLOSER_RETRY_MAX || c->stop) {
		LOG_WARN("fuse",
		         "close of ino=%llu session=%llu failed %d times, dropped (meta "
		         "prunes the session when this mount goes): %s",
		         (unsigned long long)e.ino, (unsigned long long)e.session, tries,
		         cfs_strerror(rc));
		return;
	}
	uint64_t delay = c->retry_ns << (tries - 1 < 5 ? tries - 1 : 5);
	if (delay > c->retry_ns * CLOSER_RETRY_CAP)
		delay = c->retry_ns * CLOSER_RETRY_CAP;
	e.due_ns = clock_mono_ns() + delay;
	c->retry[c->nretry++] = e;
}

/* The earliest retry's due time, or 0 when none waits; the lock held. */
static uint64_t retry_due(const closer *c)
{
	uint64_t due = 0;
	for (int i = 0; i < c->nretry; i++)
		if (!due || c->retry[i].due_ns < due)
			due = c->retry[i].due_ns;
	return due;
}

/* Makes the attempts that are due, each outside the lock, until one
 * fails; the lock held. */
static void retry_run(closer *c)
{
	for (;;) {
		uint64_t now = clock_mono_ns();
		int i = 0;
		while (i < c->nretry && c->retry[i].due_ns > now)
			i++;
		if (i == c->nretry || c->stop)
			return;
		struct retry_ent e = c->retry[i];
		c->retry[i] = c->retry[--c->nretry];
		c->retrying++;
		pthread_mutex_unlock(&c->mu);
		int rc =
		    c->ops.close_known(c->ops.arg, e.ino, e.session, e.has_len ? &e.len : NULL);
		pthread_mutex_lock(&c->mu);
		c->retrying--;
		if (rc >= 0) {
			LOG_INFO("fuse", "close of ino=%llu landed at attempt %d",
			         (unsigned long long)e.ino, e.tries + 1);
			continue;
		}
		int kept = c->nretry;
		retry_later(c, &e, e.tries + 1, rc);
		/* Meta is likely still down: each further call now would
		 * wait out the client's failover deadline on this thread, the
		 * batches queued behind it with it. The others due wait as
		 * long as this one (their attempts not counted). */
		uint64_t next =
		    c->nretry > kept ? c->retry[kept].due_ns : clock_mono_ns() + c->retry_ns;
		for (int k = 0; k < c->nretry; k++)
			if (c->retry[k].due_ns < next)
				c->retry[k].due_ns = next;
		return;
	}
}

static void *closer_main(void *arg)
{
	closer *c = arg;
	uint64_t pairs[2 * META_CLOSE_MANY_MAX];
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (c->n == 0 && !c->stop) {
			uint64_t due = retry_due(c);
			if (!due) {
				pthread_cond_wait(&c->cv, &c->mu);
				continue;
			}
			if (clock_mono_ns() >= due)
				break;
			struct timespec ts = ts_of(due);
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		}
		if (c->n == 0) {
			if (c->stop)
				break; /* stopping with nothing left */
			retry_run(c);
			continue;
		}
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
		int rc = c->ops.close_many(c->ops.arg, pairs, k);
		if (rc < 0)
			LOG_WARN("fuse", "deferred close of %d sessions failed (retried): %s", k,
			         cfs_strerror(rc));
		pthread_mutex_lock(&c->mu);
		for (int i = 0; rc < 0 && i < k; i++) {
			struct retry_ent e = {.ino = pairs[2 * i], .session = pairs[2 * i + 1]};
			retry_later(c, &e, 1, rc);
		}
		c->sent += (uint64_t)k;
		pthread_cond_broadcast(&c->done_cv);
		retry_run(c);
	}
	/* One last attempt each, due or not: the closes that failed as the
	 * mount went (its last files' closes, with their lengths, come just
	 * before closer_free) would otherwise never be tried again, their
	 * lengths short until meta prunes the sessions. Until the first
	 * that fails: meta is likely down, and each further call would wait
	 * out the client's failover deadline, holding up the unmount. */
	int rc = 0;
	while (c->nretry && rc >= 0) {
		struct retry_ent e = c->retry[--c->nretry];
		c->retrying++;
		pthread_mutex_unlock(&c->mu);
		rc = c->ops.close_known(c->ops.arg, e.ino, e.session, e.has_len ? &e.len : NULL);
		pthread_mutex_lock(&c->mu);
		c->retrying--;
	}
	int dropped = c->nretry + (rc < 0);
	if (dropped)
		LOG_WARN("fuse",
		         "%d failed closes dropped at stop (meta prunes their sessions): %s",
		         dropped, cfs_strerror(rc));
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static int mc_close_many(void *arg, const uint64_t *pairs, int n)
{
	return meta_client_close_many(arg, pairs, n);
}

static int mc_close_known(void *arg, uint64_t ino, uint64_t session, const struct meta_length *len)
{
	static const struct meta_cred root = {0, 0, 0, NULL};
	return meta_client_close_known(arg, &root, ino, session, len);
}

closer *closer_new(meta_client *meta, int window_ms)
{
	struct closer_ops ops = {mc_close_many, mc_close_known, meta};
	return closer_new_ops(&ops, window_ms, 1000);
}

closer *closer_new_ops(const struct closer_ops *ops, int window_ms, int retry_ms)
{
	closer *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->ops = *ops;
	c->window_ns = (uint64_t)(window_ms > 0 ? window_ms : 0) * 1000000u;
	c->retry_ns = (uint64_t)(retry_ms > 0 ? retry_ms : 1) * 1000000u;
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

int closer_retry(closer *c, uint64_t ino, uint64_t session, const struct meta_length *len, int err)
{
	struct retry_ent e = {.ino = ino, .session = session, .has_len = len != NULL};
	if (len)
		e.len = *len;
	pthread_mutex_lock(&c->mu);
	int ok = !c->stop && c->nretry < CLOSER_RETRY_MAX;
	retry_later(c, &e, 1, err);
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return ok;
}

int closer_retries_pending(closer *c)
{
	pthread_mutex_lock(&c->mu);
	int n = c->nretry + c->retrying;
	pthread_mutex_unlock(&c->mu);
	return n;
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
