/* chunk_fixed.c - memory ranges chunk engines may register as fixed
 * buffers (chunk_fixed.h). */
#include "storage/chunk_fixed.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common/xalloc.h"

struct fixed_range {
	uint64_t id; /* 0: free */
	uint8_t *base;
	uint64_t len;
};

struct chunk_fixed {
	pthread_mutex_t mu;
	struct fixed_range r[CHUNK_FIXED_MAX]; /* under mu */
	uint64_t next_id;                      /* under mu */
	_Atomic uint64_t gen;
	struct fixed_watch {
		void (*fn)(void *);
		void *arg;
	} * w; /* under mu: chunk_fixed_watch */
	int nw;
};

struct chunk_fixed *chunk_fixed_new(void)
{
	struct chunk_fixed *f = xcalloc(1, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	return f;
}

void chunk_fixed_free(struct chunk_fixed *f)
{
	if (!f)
		return;
	pthread_mutex_destroy(&f->mu);
	free(f->w);
	free(f);
}

uint64_t chunk_fixed_add(struct chunk_fixed *f, void *base, uint64_t len)
{
	if (!f || !base || !len)
		return 0;
	uint64_t id = 0;
	pthread_mutex_lock(&f->mu);
	for (int i = 0; i < CHUNK_FIXED_MAX; i++) {
		if (!f->r[i].id) {
			id = ++f->next_id;
			f->r[i] = (struct fixed_range){.id = id, .base = base, .len = len};
			break;
		}
	}
	pthread_mutex_unlock(&f->mu);
	return id;
}

void chunk_fixed_remove(struct chunk_fixed *f, uint64_t id)
{
	if (!f || !id)
		return;
	pthread_mutex_lock(&f->mu);
	for (int i = 0; i < CHUNK_FIXED_MAX; i++) {
		if (f->r[i].id == id) {
			f->r[i].id = 0;
			atomic_fetch_add_explicit(&f->gen, 1, memory_order_release);
			for (int k = 0; k < f->nw; k++)
				f->w[k].fn(f->w[k].arg);
			break;
		}
	}
	pthread_mutex_unlock(&f->mu);
}

int chunk_fixed_find(struct chunk_fixed *f, const void *p, uint64_t len,
                     struct chunk_fixed_piece *out)
{
	if (!f || !len)
		return -ENOENT;
	uintptr_t a = (uintptr_t)p;
	int rc = -ENOENT;
	pthread_mutex_lock(&f->mu);
	for (int i = 0; i < CHUNK_FIXED_MAX; i++) {
		struct fixed_range *r = &f->r[i];
		uintptr_t b = (uintptr_t)r->base;
		if (!r->id || a < b || a - b >= r->len || len > r->len - (a - b))
			continue;
		uint64_t k = (a - b) / CHUNK_FIXED_PIECE;
		uint64_t start = k * CHUNK_FIXED_PIECE;
		uint64_t plen =
		    r->len - start < CHUNK_FIXED_SPAN ? r->len - start : CHUNK_FIXED_SPAN;
		if ((a - b) + len <= start + plen) {
			*out = (struct chunk_fixed_piece){
			    .id = r->id, .piece = k, .base = r->base + start, .len = plen};
			rc = 0;
		}
		break;
	}
	pthread_mutex_unlock(&f->mu);
	return rc;
}

uint64_t chunk_fixed_gen(const struct chunk_fixed *f)
{
	return f ? atomic_load_explicit(&f->gen, memory_order_acquire) : 0;
}

int chunk_fixed_live(struct chunk_fixed *f, uint64_t id)
{
	int live = 0;
	pthread_mutex_lock(&f->mu);
	for (int i = 0; i < CHUNK_FIXED_MAX && !live; i++)
		live = f->r[i].id == id;
	pthread_mutex_unlock(&f->mu);
	return live;
}

void chunk_fixed_watch(struct chunk_fixed *f, void (*fn)(void *), void *arg)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->mu);
	f->w = xrealloc(f->w, (size_t)(f->nw + 1) * sizeof(*f->w));
	f->w[f->nw++] = (struct fixed_watch){.fn = fn, .arg = arg};
	pthread_mutex_unlock(&f->mu);
}

void chunk_fixed_unwatch(struct chunk_fixed *f, void *arg)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->mu);
	for (int k = 0; k < f->nw; k++)
		if (f->w[k].arg == arg) {
			f->w[k] = f->w[--f->nw];
			break;
		}
	pthread_mutex_unlock(&f->mu);
}
