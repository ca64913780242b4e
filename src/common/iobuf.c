/* iobuf.c - see iobuf.h.
 *
 * A region is 2 MiB, aligned to 2 MiB, holding two buffers; the second
 * waits idle while the first is handed out. Idle buffers wait on a stack
 * (most recently used on top: its pages are the likeliest to be in the
 * CPU's caches), at most IOBUF_KEEP; a buffer put beyond that is
 * unmapped alone (its region, and any huge page, split in two). Under
 * one mutex: get and put are a few loads and stores, once per 1 MiB of
 * I/O. */
#include "common/iobuf.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define IOBUF_REGION (2 * (size_t)IOBUF_SIZE)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void *idle[IOBUF_KEEP];
static size_t nidle;
static size_t mapped;

/* A new region, its second buffer idle; the first, or NULL. Called
 * under mu with no buffer idle. */
static void *region_new(void)
{
	/* Twice the size, trimmed to the aligned 2 MiB inside. */
	uint8_t *m = mmap(NULL, 2 * IOBUF_REGION, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	uint8_t *r = (uint8_t *)(((uintptr_t)m + IOBUF_REGION - 1) & ~(uintptr_t)(IOBUF_REGION - 1));
	if (r > m)
		munmap(m, (size_t)(r - m));
	if (r + IOBUF_REGION < m + 2 * IOBUF_REGION)
		munmap(r + IOBUF_REGION, (size_t)(m + 2 * IOBUF_REGION - (r + IOBUF_REGION)));
	(void)madvise(r, IOBUF_REGION, MADV_HUGEPAGE); /* a hint: fine if refused */
	mapped += 2;
	idle[nidle++] = r + IOBUF_SIZE;
	return r;
}

void *iobuf_get(void)
{
	pthread_mutex_lock(&mu);
	void *b = nidle ? idle[--nidle] : region_new();
	pthread_mutex_unlock(&mu);
	return b;
}

void iobuf_put(void *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&mu);
	if (nidle < IOBUF_KEEP) {
		idle[nidle++] = b;
		b = NULL;
	} else {
		mapped--;
	}
	pthread_mutex_unlock(&mu);
	if (b)
		munmap(b, IOBUF_SIZE);
}

size_t iobuf_mapped(void)
{
	pthread_mutex_lock(&mu);
	size_t n = mapped;
	pthread_mutex_unlock(&mu);
	return n;
}
