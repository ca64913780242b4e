/* craq_lock.c - small concurrency pieces of the CRAQ service: per-chunk
 * locks with FIFO hand-over, the exactly-once result cache and a thread
 * for delayed calls (forward retries, dump scans).
 *
 * Locks: a hash of chunk id -> entry {held, grants, waiters}; an entry
 * stays after release (its grant counter is how a read detects that a
 * write started and finished while it read). Entries are few per target
 * (chunks written since start); each costs ~48 bytes.
 * Dedup: a hash of (client, chain, channel) -> last (seq, status, reply),
 * at most 16 channels per bucket (least recently written evicted).
 * Sched: a list sorted by due time, one thread; free runs what is left.
 * Each structure has one mutex; none calls out while holding it except
 * the scheduler, which drops it around each call.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/xalloc.h"
#include "storage/storage_int.h"

#define NBUCKET 4096

struct lock_ent {
	struct chunk_id id;
	bool held;
	uint64_t grants;
	struct craq_waiter *head, *tail;
	struct lock_ent *next;
};

struct craq_locks {
	pthread_mutex_t mu;
	struct lock_ent *b[NBUCKET];
	void (*grant_fn)(void *arg, struct chunk_id id); /* under mu */
	void *grant_arg;
};

void craq_locks_set_hook(struct craq_locks *l, void (*fn)(void *arg, struct chunk_id id),
			 void *arg)
{
	pthread_mutex_lock(&l->mu);
	l->grant_fn = fn;
	l->grant_arg = arg;
	pthread_mutex_unlock(&l->mu);
}

static size_t hash_id(struct chunk_id id)
{
	uint64_t h = id.ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)id.idx * 0xC2B2AE3D27D4EB4Full;
	return (size_t)(h >> 40) % NBUCKET;
}

struct craq_locks *craq_locks_new(void)
{
	struct craq_locks *l = xcalloc(1, sizeof(*l));
	pthread_mutex_init(&l->mu, NULL);
	return l;
}

void craq_locks_free(struct craq_locks *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < NBUCKET; i++)
		for (struct lock_ent *e = l->b[i], *n; e; e = n) {
			n = e->next;
			free(e);
		}
	pthread_mutex_destroy(&l->mu);
	free(l);
}

static struct lock_ent *find(struct craq_locks *l, struct chunk_id id, bool create)
{
	size_t h = hash_id(id);
	for (struct lock_ent *e = l->b[h]; e; e = e->next)
		if (!chunk_id_cmp(e->id, id))
			return e;
	if (!create)
		return NULL;
	struct lock_ent *e = xcalloc(1, sizeof(*e));
	e->id = id;
	e->next = l->b[h];
	l->b[h] = e;
	return e;
}

bool craq_lock(struct craq_locks *l, struct chunk_id id, struct craq_waiter *w)
{
	pthread_mutex_lock(&l->mu);
	struct lock_ent *e = find(l, id, true);
	bool got = !e->held;
	if (got) {
		e->held = true;
		e->grants++;
		if (l->grant_fn)
			l->grant_fn(l->grant_arg, id);
	} else {
		w->next = NULL;
		if (e->tail)
			e->tail->next = w;
		else
			e->head = w;
		e->tail = w;
	}
	pthread_mutex_unlock(&l->mu);
	return got;
}

void craq_unlock(struct craq_locks *l, struct chunk_id id)
{
	pthread_mutex_lock(&l->mu);
	struct lock_ent *e = find(l, id, false);
	struct craq_waiter *w = NULL;
	if (e) {
		w = e->head;
		if (w) {
			e->head = w->next;
			if (!e->head)
				e->tail = NULL;
			e->grants++;
		} else {
			e->held = false;
		}
	}
	pthread_mutex_unlock(&l->mu);
	if (w)
		w->fn(w->arg);
}

bool craq_lock_peek(struct craq_locks *l, struct chunk_id id, uint64_t *gen)
{
	pthread_mutex_lock(&l->mu);
	struct lock_ent *e = find(l, id, false);
	bool held = e && e->held;
	*gen = e ? e->grants : 0;
	pthread_mutex_unlock(&l->mu);
	return held;
}

struct blocking_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool granted;
};

static void wake_blocked(void *arg)
{
	struct blocking_wait *b = arg;
	pthread_mutex_lock(&b->mu);
	b->granted = true;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

void craq_lock_wait(struct craq_locks *l, struct chunk_id id)
{
	struct blocking_wait b = { .granted = false };
	struct craq_waiter w = { .fn = wake_blocked, .arg = &b };
	pthread_mutex_init(&b.mu, NULL);
	pthread_cond_init(&b.cv, NULL);
	if (!craq_lock(l, id, &w)) {
		pthread_mutex_lock(&b.mu);
		while (!b.granted)
			pthread_cond_wait(&b.cv, &b.mu);
		pthread_mutex_unlock(&b.mu);
	}
	pthread_mutex_destroy(&b.mu);
	pthread_cond_destroy(&b.cv);
}

void craq_locks_drain(struct craq_locks *l)
{
	struct chunk_id *ids = NULL;
	size_t n = 0, cap = 0;
	pthread_mutex_lock(&l->mu);
	for (size_t i = 0; i < NBUCKET; i++)
		for (struct lock_ent *e = l->b[i]; e; e = e->next) {
			if (!e->held)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				ids = xrealloc(ids, cap * sizeof(*ids));
			}
			ids[n++] = e->id;
		}
	pthread_mutex_unlock(&l->mu);
	for (size_t i = 0; i < n; i++) {
		craq_lock_wait(l, ids[i]);
		craq_unlock(l, ids[i]);
	}
	free(ids);
}

/* ---- dedup ---- */

#define DEDUP_RESP_MAX 64
#define DEDUP_PER_BUCKET 16 /* at most NBUCKET * 16 channels remembered */

struct dedup_ent {
	uint64_t client, channel, seq;
	uint32_t chain;
	uint64_t stamp;    /* last put, for eviction */
	int status;
	uint32_t resp_len;
	uint8_t resp[DEDUP_RESP_MAX];
	struct dedup_ent *next;
};

struct craq_dedup {
	pthread_mutex_t mu;
	uint64_t stamp;
	struct dedup_ent *b[NBUCKET];
};

struct craq_dedup *craq_dedup_new(void)
{
	struct craq_dedup *d = xcalloc(1, sizeof(*d));
	pthread_mutex_init(&d->mu, NULL);
	return d;
}

void craq_dedup_free(struct craq_dedup *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < NBUCKET; i++)
		for (struct dedup_ent *e = d->b[i], *n; e; e = n) {
			n = e->next;
			free(e);
		}
	pthread_mutex_destroy(&d->mu);
	free(d);
}

static size_t dbucket(uint64_t client, uint32_t chain, uint64_t channel)
{
	uint64_t h = (client * 0x9E3779B97F4A7C15ull) ^ (channel * 0xC2B2AE3D27D4EB4Full) ^ chain;
	return (size_t)(h >> 40) % NBUCKET;
}

static struct dedup_ent **dslot(struct craq_dedup *d, uint64_t client, uint32_t chain,
				uint64_t channel)
{
	struct dedup_ent **pp = &d->b[dbucket(client, chain, channel)];
	while (*pp && !((*pp)->client == client && (*pp)->chain == chain &&
			(*pp)->channel == channel))
		pp = &(*pp)->next;
	return pp;
}

/* Drops the least recently used entry of a full bucket: a channel idle
 * that long has long stopped retrying its last write. */
static void devict(struct dedup_ent **head)
{
	size_t n = 0;
	struct dedup_ent **oldest = NULL;
	for (struct dedup_ent **pp = head; *pp; pp = &(*pp)->next, n++)
		if (!oldest || (*pp)->stamp < (*oldest)->stamp)
			oldest = pp;
	if (n >= DEDUP_PER_BUCKET && oldest) {
		struct dedup_ent *e = *oldest;
		*oldest = e->next;
		free(e);
	}
}

int craq_dedup_get(struct craq_dedup *d, uint64_t client, uint32_t chain, uint64_t channel,
		   uint64_t seq, int *status, uint8_t *resp, uint32_t *resp_len)
{
	pthread_mutex_lock(&d->mu);
	struct dedup_ent *e = *dslot(d, client, chain, channel);
	int r = DEDUP_MISS;
	if (e && e->seq == seq)
		r = DEDUP_HIT;
	else if (e && e->seq > seq)
		r = DEDUP_STALE;
	if (r == DEDUP_HIT) {
		*status = e->status;
		memcpy(resp, e->resp, e->resp_len);
		*resp_len = e->resp_len;
	}
	pthread_mutex_unlock(&d->mu);
	return r;
}

void craq_dedup_put(struct craq_dedup *d, uint64_t client, uint32_t chain, uint64_t channel,
		    uint64_t seq, int status, const uint8_t *resp, uint32_t resp_len)
{
	if (resp_len > DEDUP_RESP_MAX)
		resp_len = DEDUP_RESP_MAX;
	pthread_mutex_lock(&d->mu);
	struct dedup_ent **pp = dslot(d, client, chain, channel);
	if (!*pp) {
		devict(&d->b[dbucket(client, chain, channel)]);
		pp = dslot(d, client, chain, channel);
		*pp = xcalloc(1, sizeof(**pp));
		(*pp)->client = client;
		(*pp)->chain = chain;
		(*pp)->channel = channel;
	}
	if (seq >= (*pp)->seq) {
		(*pp)->stamp = ++d->stamp;
		(*pp)->seq = seq;
		(*pp)->status = status;
		(*pp)->resp_len = resp_len;
		memcpy((*pp)->resp, resp, resp_len);
	}
	pthread_mutex_unlock(&d->mu);
}

/* ---- sched ---- */

struct sched_item {
	uint64_t due_ms;
	void (*fn)(void *arg);
	void *arg;
	struct sched_item *next;
};

struct craq_sched {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct sched_item *head; /* sorted by due_ms */
	bool stop;
	pthread_t thr;
};

static void *sched_main(void *arg)
{
	struct craq_sched *s = arg;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		uint64_t now = clock_mono_ms();
		if (s->head && (s->head->due_ms <= now || s->stop)) {
			struct sched_item *it = s->head;
			s->head = it->next;
			pthread_mutex_unlock(&s->mu);
			it->fn(it->arg);
			free(it);
			pthread_mutex_lock(&s->mu);
			continue;
		}
		if (s->stop)
			break;
		if (!s->head) {
			pthread_cond_wait(&s->cv, &s->mu);
		} else {
			struct timespec ts = clock_after_ms(CLOCK_REALTIME, s->head->due_ms - now);
			pthread_cond_timedwait(&s->cv, &s->mu, &ts);
		}
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

struct craq_sched *craq_sched_new(void)
{
	struct craq_sched *s = xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	if (pthread_create(&s->thr, NULL, sched_main, s))
		abort();
	return s;
}

void craq_sched_free(struct craq_sched *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thr, NULL);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

void craq_sched_after(struct craq_sched *s, uint32_t ms, void (*fn)(void *arg), void *arg)
{
	struct sched_item *it = xcalloc(1, sizeof(*it));
	it->due_ms = clock_mono_ms() + ms;
	it->fn = fn;
	it->arg = arg;
	pthread_mutex_lock(&s->mu);
	struct sched_item **pp = &s->head;
	while (*pp && (*pp)->due_ms <= it->due_ms)
		pp = &(*pp)->next;
	it->next = *pp;
	*pp = it;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}
