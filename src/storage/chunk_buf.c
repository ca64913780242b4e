/* chunk_buf.c - aligned buffer pool.
 *
 * One free list per power-of-two size class (4 KiB << k). A freed buffer
 * is pushed on its class list unless the idle total would pass the cache
 * budget, in which case it goes back to libc. The list links live in the
 * idle buffers themselves, so the pool needs no bookkeeping memory.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/xalloc.h"
#include "storage/chunk_buf.h"

#define NSIZES 16 /* 4 KiB .. 128 MiB */

struct idle {
	struct idle *next;
};

struct chunk_bufpool {
	pthread_mutex_t mu;        /* guards everything below */
	struct idle *lists[NSIZES];/* idle buffers per size */
	size_t idle_bytes;         /* total size of idle buffers */
	size_t cache_bytes;        /* budget for idle_bytes */
};

static int size_idx(size_t n)
{
	int k = 0;
	while (((size_t)4096 << k) < n)
		k++;
	return k < NSIZES ? k : -1;
}

struct chunk_bufpool *chunk_bufpool_new(size_t cache_bytes)
{
	struct chunk_bufpool *p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->mu, NULL);
	p->cache_bytes = cache_bytes;
	return p;
}

void chunk_bufpool_free(struct chunk_bufpool *p)
{
	if (!p)
		return;
	for (int k = 0; k < NSIZES; k++) {
		while (p->lists[k]) {
			struct idle *b = p->lists[k];
			p->lists[k] = b->next;
			free(b);
		}
	}
	pthread_mutex_destroy(&p->mu);
	free(p);
}

void *chunk_buf_get(struct chunk_bufpool *p, size_t n)
{
	int k = size_idx(n);
	if (k < 0)
		return NULL;
	pthread_mutex_lock(&p->mu);
	struct idle *b = p->lists[k];
	if (b) {
		p->lists[k] = b->next;
		p->idle_bytes -= (size_t)4096 << k;
	}
	pthread_mutex_unlock(&p->mu);
	if (b)
		return b;
	void *m = NULL;
	return posix_memalign(&m, 4096, (size_t)4096 << k) ? NULL : m;
}

void chunk_buf_put(struct chunk_bufpool *p, void *buf, size_t n)
{
	if (!buf)
		return;
	int k = size_idx(n);
	size_t sz = (size_t)4096 << k;
	pthread_mutex_lock(&p->mu);
	if (p->idle_bytes + sz <= p->cache_bytes) {
		struct idle *b = buf;
		b->next = p->lists[k];
		p->lists[k] = b;
		p->idle_bytes += sz;
		buf = NULL;
	}
	pthread_mutex_unlock(&p->mu);
	free(buf);
}
