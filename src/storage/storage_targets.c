/* storage_targets.c - the storage service's target registry, request
 * buffers and admission count (see storage_targets.h for who uses them).
 *
 * A target's id is node * 1000 + its position in --targets: the position
 * is recorded in DIR/slot at first start, and a directory listed at
 * another position later is refused (its chunks belong to the other id).
 * Lookups need no lock: the table is fixed while the server runs, and the
 * node id comes from the mgmtd client (0 standalone).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "storage/chunk_buf.h"
#include "storage/stor_sc.h"
#include "storage/storage_int.h"
#include "storage_client/sc_shm.h"

#define PAGE 4096u
#define ALIGN4K(x) (((uint64_t)(x) + PAGE - 1) & ~(uint64_t)(PAGE - 1))

void *stor_alloc_aligned(uint64_t n)
{
	void *p = NULL;
	uint64_t sz = ALIGN4K(n ? n : 1);
	if (posix_memalign(&p, PAGE, sz))
		return NULL;
	return p;
}

void *stor_buf_get(struct storage_service *s, uint64_t n)
{
	if (n <= CHUNK_MAX_SIZE)
		return chunk_buf_get(s->pool, (size_t)(n ? n : 1));
	return stor_alloc_aligned(n);
}

void *stor_wbuf_get(struct storage_service *s, uint64_t n)
{
	void *p = sc_shm_buf_get(s->shm, n);
	return p ? p : stor_buf_get(s, n);
}

void stor_buf_put(struct storage_service *s, void *p, uint64_t n)
{
	if (sc_shm_buf_owns(s->shm, p)) {
		sc_shm_buf_put(s->shm, p, n, 0);
		return;
	}
	if (n <= CHUNK_MAX_SIZE)
		chunk_buf_put(s->pool, p, (size_t)(n ? n : 1));
	else
		free(p);
}

uint32_t stor_target_id(struct storage_service *s, const struct stor_target *t)
{
	uint32_t node = s->mc ? mgmtd_client_node_id(s->mc) : 0;
	return node * 1000 + t->slot;
}

struct stor_target *stor_target_by_id(struct storage_service *s, uint32_t id)
{
	uint32_t node = s->mc ? mgmtd_client_node_id(s->mc) : 0;
	if (id / 1000 != node || id % 1000 == 0 || id % 1000 > s->nt)
		return NULL;
	return &s->t[id % 1000 - 1];
}

const char *stor_node_addr(const struct route_info *ri, uint32_t node_id)
{
	const struct route_node *n = route_find_node(ri, node_id);
	return n ? n->addr : NULL;
}

int stor_begin(struct storage_service *s)
{
	atomic_fetch_add(&s->inflight, 1);
	if (atomic_load(&s->stopping)) {
		atomic_fetch_sub(&s->inflight, 1);
		return -CFS_EUNAVAIL;
	}
	return 0;
}

void stor_end(struct storage_service *s) { atomic_fetch_sub(&s->inflight, 1); }

static int check_slot(const struct stor_target *t, char *err, size_t errlen)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/slot", t->dir);
	FILE *f = fopen(path, "r");
	if (f) {
		unsigned v = 0;
		int ok = fscanf(f, "%u", &v) == 1;
		fclose(f);
		if (!ok || v != t->slot) {
			snprintf(err, errlen,
				 "target %s was number %u in --targets, now %u: keep the order",
				 t->dir, v, t->slot);
			return -EINVAL;
		}
		return 0;
	}
	f = fopen(path, "w");
	if (!f || fprintf(f, "%u\n", t->slot) < 0 || fflush(f) || fsync(fileno(f))) {
		int e = errno;
		if (f)
			fclose(f);
		snprintf(err, errlen, "target %s: cannot record its slot: %s", t->dir, strerror(e));
		return -e;
	}
	fclose(f);
	return 0;
}

int stor_targets_open(struct storage_service *s, const struct storage_service_opts *o, char *err,
		      size_t errlen)
{
	int rc;
	s->pool = chunk_bufpool_new(512u << 20);
	s->t = xcalloc(o->n_targets, sizeof(*s->t));
	for (size_t i = 0; i < o->n_targets; i++) {
		struct stor_target *t = &s->t[i];
		struct chunk_engine_cfg cfg;
		chunk_engine_cfg_default(&cfg);
		cfg.dir = o->target_dirs[i];
		cfg.capacity = o->capacity;
		cfg.cached_read_max = o->cached_read_max;
		cfg.fixed = s->fixed;
		if (o->sync < 0)
			cfg.sync = 0;
		t->slot = (uint32_t)i + 1;
		t->dir = xstrdup(o->target_dirs[i]);
		t->locks = craq_locks_new();
		pthread_mutex_init(&t->io_mu, NULL);
		pthread_mutex_init(&t->state_mu, NULL);
		t->io_list.prev = t->io_list.next = &t->io_list;
		atomic_store(&t->local_state, CHAIN_LS_OFFLINE);
		s->nt = i + 1;
		stor_sc_wait_predecessor(t->dir);
		if ((rc = chunk_engine_open(&cfg, &t->eng))) {
			snprintf(err, errlen, "target %s: %s", t->dir, cfs_strerror(rc));
			return rc;
		}
		if ((rc = check_slot(t, err, errlen)))
			return rc;
	}
	return 0;
}

void stor_targets_close(struct storage_service *s)
{
	for (size_t i = 0; i < s->nt; i++) {
		chunk_engine_close(s->t[i].eng);
		craq_locks_free(s->t[i].locks);
		pthread_mutex_destroy(&s->t[i].io_mu);
		pthread_mutex_destroy(&s->t[i].state_mu);
		free(s->t[i].dir);
	}
	free(s->t);
	s->t = NULL;
	s->nt = 0;
	chunk_bufpool_free(s->pool);
	s->pool = NULL;
}

uint32_t stor_nospace_fenced(struct stor_target *t, uint64_t now)
{
	uint32_t b = atomic_load(&t->nospace_backoff_ms);
	b = b ? (b >= STOR_NOSPACE_BACKOFF_MAX_MS / 2 ? STOR_NOSPACE_BACKOFF_MAX_MS : b * 2)
	      : STOR_NOSPACE_BACKOFF_MIN_MS;
	atomic_store(&t->nospace_backoff_ms, b);
	atomic_store(&t->nospace_until, now + b);
	atomic_store(&t->serving_since, 0);
	return b;
}

int stor_nospace_served(struct stor_target *t, int serving, uint64_t now)
{
	if (!serving) {
		atomic_store(&t->serving_since, 0);
		return 0;
	}
	uint64_t since = atomic_load(&t->serving_since);
	if (!since) {
		atomic_store(&t->serving_since, now ? now : 1);
		return 0;
	}
	if (now - since < STOR_NOSPACE_RESET_MS || !atomic_load(&t->nospace_backoff_ms))
		return 0;
	atomic_store(&t->nospace_backoff_ms, 0);
	return 1;
}

void stor_io_begin(struct stor_target *t, struct stor_io_ent *e)
{
	pthread_mutex_lock(&t->io_mu);
	/* Stamped under the mutex: the list stays oldest first. */
	e->since = clock_mono_ms();
	if (!e->since)
		e->since = 1;
	e->next = &t->io_list;
	e->prev = t->io_list.prev;
	e->prev->next = e;
	t->io_list.prev = e;
	pthread_mutex_unlock(&t->io_mu);
}

void stor_io_end(struct stor_target *t, struct stor_io_ent *e)
{
	if (!e->since)
		return;
	pthread_mutex_lock(&t->io_mu);
	e->prev->next = e->next;
	e->next->prev = e->prev;
	pthread_mutex_unlock(&t->io_mu);
	*e = (struct stor_io_ent){0};
}

uint64_t stor_io_oldest_age(struct stor_target *t, uint64_t now)
{
	pthread_mutex_lock(&t->io_mu);
	uint64_t since = t->io_list.next != &t->io_list ? t->io_list.next->since : 0;
	pthread_mutex_unlock(&t->io_mu);
	return since && now > since ? now - since : 0;
}
