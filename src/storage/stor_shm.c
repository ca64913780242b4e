/* stor_shm.c - regions of the shared-memory bulk path (stor_shm.h).
 *
 * WHY THE CHECKS. The memory belongs to a client that may be hostile or
 * die at any time. F_SEAL_SHRINK (checked with F_GET_SEALS) means the
 * memfd can never get shorter than it is now, so no page of our mapping
 * can vanish under a copy (a truncated /dev/shm file would SIGBUS this
 * process); a client that did not seal is refused. Every (region, off,
 * cap) is checked against the size mapped here, in overflow-safe form,
 * before a byte is written. What the client writes into the region
 * meanwhile only changes its own results: the service copies into it,
 * never reads from it on this path.
 *
 * UNREGISTER. A client that stops using a memory (the mount, when an
 * application destroys its iov) sends SHM_UNREG: the region leaves the
 * connection's table at once and is unmapped when the last request that
 * holds it (stor_shm_hold: a read waiting for the disk) is done, so a
 * read that outlived its client's timeout still lands in the memfd's own
 * pages (which only the client can see, through that memfd) and never in
 * memory this process reused.
 */
#include "storage/stor_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/status.h"
#include "storage/chunk_fixed.h"
#include "storage/storage_proto.h"

/* A mapped region. The connection's table holds one reference and each
 * stor_shm_hold one more; the last unmaps. Refs are atomic because a
 * hold may be dropped on an engine thread. */
struct stor_shm_region {
	uint64_t id;
	uint8_t *base;
	uint64_t size;
	_Atomic int refs;
	pthread_rwlock_t lock; /* copies into the region (read) vs revoking (write) */
	int revoked;           /* under lock: SHM_UNREG came, copy nothing more in */
	struct chunk_fixed *fixed; /* the mapping is range fixed_id there (0: not) */
	uint64_t fixed_id;
};

/* Owned by the connection's loop thread (handlers); regions packed in
 * r[0..n). */
struct shm_conn {
	int n;
	struct stor_shm_region *r[STOR_SHM_MAX_REGIONS];
	void *ext;                 /* stor_shm_set_conn_ext */
	void (*ext_free)(void *);
};

/* Ids start at a random-ish point so a restarted service does not hand
 * out the ids of its predecessor (a client re-registers on -ESTALE). */
static _Atomic uint64_t next_id;

static uint64_t new_id(void)
{
	uint64_t zero = 0;
	atomic_compare_exchange_strong(&next_id, &zero,
				       ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) << 8);
	return atomic_fetch_add(&next_id, 1) + 1;
}

void stor_shm_release(struct stor_shm_region *r)
{
	if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
		return;
	chunk_fixed_remove(r->fixed, r->fixed_id); /* before the address can be reused */
	munmap(r->base, r->size);
	pthread_rwlock_destroy(&r->lock);
	free(r);
}

static void shm_conn_free(void *arg)
{
	struct shm_conn *sc = arg;
	if (sc->ext_free)
		sc->ext_free(sc->ext);
	for (int i = 0; i < sc->n; i++)
		stor_shm_release(sc->r[i]);
	free(sc);
}

static void reg_refuse(struct rpc_req *req, int fd, int err, const char *why)
{
	if (fd >= 0)
		close(fd);
	LOG_WARN("storage", "shm register refused: peer=%s reason=%s", rpc_req_peer(req), why);
	rpc_reply_error(req, err, why);
}

void stor_shm_register(struct rpc_req *req, struct chunk_fixed *fixed)
{
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	struct sto_shm_reg_req m;
	/* Take the descriptor first: it must not stay queued for a later
	 * registration whatever is wrong with this one. */
	int fd = rpc_req_take_fd(req);
	if (sto_shm_reg_req_decode(p, plen, &m)) {
		reg_refuse(req, fd, -CFS_EPROTO, "malformed request");
		return;
	}
	if (fd < 0) {
		reg_refuse(req, -1, -EBADF, "no descriptor (not a same-host connection?)");
		return;
	}
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || seals < 0) {
		reg_refuse(req, fd, -EBADF, "not a memfd");
		return;
	}
	if (!(seals & F_SEAL_SHRINK)) {
		reg_refuse(req, fd, -EBADF, "memfd not sealed against shrinking");
		return;
	}
	if (m.size == 0 || m.size > STOR_SHM_MAX_SIZE || m.size > (uint64_t)st.st_size) {
		reg_refuse(req, fd, -EINVAL, "bad size");
		return;
	}
	struct shm_conn *sc = rpc_req_conn_data(req);
	if (!sc) {
		sc = calloc(1, sizeof(*sc));
		if (!sc || rpc_req_set_conn_data(req, sc, shm_conn_free)) {
			free(sc);
			reg_refuse(req, fd, -ENOMEM, "no memory");
			return;
		}
	}
	if (sc->n == STOR_SHM_MAX_REGIONS) {
		reg_refuse(req, fd, -ENOSPC, "too many regions on this connection");
		return;
	}
	struct stor_shm_region *r = calloc(1, sizeof(*r));
	if (!r) {
		reg_refuse(req, fd, -ENOMEM, "no memory");
		return;
	}
	void *base = mmap(NULL, m.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED) {
		int e = errno;
		free(r);
		reg_refuse(req, -1, -e, "mmap failed");
		return;
	}
	r->id = new_id();
	r->base = base;
	r->size = m.size;
	r->fixed = fixed;
	r->fixed_id = chunk_fixed_add(fixed, base, m.size);
	atomic_init(&r->refs, 1);
	pthread_rwlock_init(&r->lock, NULL);
	sc->r[sc->n++] = r;
	struct sto_shm_reg_resp resp = { .region = r->id };
	struct buf b;
	buf_init(&b);
	int rc = sto_shm_reg_resp_encode(&b, &resp);
	if (rc)
		rpc_reply_error(req, rc, "encode");
	else
		rpc_reply(req, 0, b.data, (uint32_t)b.len);
	buf_fini(&b);
}

/* REGION of REQ's connection and its index in the table, or NULL. */
static struct stor_shm_region *region_find(struct rpc_req *req, uint64_t region, int *idx)
{
	struct shm_conn *sc = rpc_req_conn_data(req);
	for (int i = 0; sc && i < sc->n; i++)
		if (sc->r[i]->id == region) {
			*idx = i;
			return sc->r[i];
		}
	return NULL;
}

int stor_shm_lookup(struct rpc_req *req, uint64_t region, uint64_t off, uint64_t cap,
		    uint8_t **out)
{
	int i;
	struct stor_shm_region *r = region_find(req, region, &i);
	if (!r)
		return -ESTALE;
	if (off > r->size || cap > r->size - off)
		return -EFAULT;
	*out = r->base + off;
	return 0;
}

int stor_shm_hold(struct rpc_req *req, uint64_t region, uint64_t off, uint64_t cap,
		  uint8_t **out, struct stor_shm_region **hold)
{
	int rc = stor_shm_lookup(req, region, off, cap, out);
	if (rc)
		return rc;
	int i;
	*hold = region_find(req, region, &i);
	atomic_fetch_add_explicit(&(*hold)->refs, 1, memory_order_relaxed);
	return 0;
}

void stor_shm_unregister(struct rpc_req *req)
{
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	struct sto_shm_unreg_req m;
	if (sto_shm_unreg_req_decode(p, plen, &m)) {
		LOG_WARN("storage", "shm unregister: malformed request: peer=%s",
			 rpc_req_peer(req));
		rpc_reply_error(req, -CFS_EPROTO, "malformed request");
		return;
	}
	int i;
	struct stor_shm_region *r = region_find(req, m.region, &i);
	if (!r) {
		rpc_reply_error(req, -ESTALE, "no such region on this connection");
		return;
	}
	/* Out of the table first: no request handled after this one finds
	 * it. The holds of earlier ones keep the mapping until they end. */
	struct shm_conn *sc = rpc_req_conn_data(req);
	sc->r[i] = sc->r[--sc->n];
	sc->r[sc->n] = NULL;
	/* A copy running now finishes first; later ones see revoked. So once
	 * the reply is out, nothing more lands in the client's memory. */
	pthread_rwlock_wrlock(&r->lock);
	r->revoked = 1;
	pthread_rwlock_unlock(&r->lock);
	stor_shm_release(r);
	rpc_reply(req, 0, NULL, 0);
}

int stor_shm_span(const struct stor_shm_region *r, uint64_t off, uint64_t len, uint8_t **out)
{
	if (off > r->size || len > r->size - off)
		return -EFAULT;
	*out = r->base + off;
	return 0;
}

int stor_shm_copy_in(struct stor_shm_region *r, uint8_t *dst, const void *src, size_t n)
{
	pthread_rwlock_rdlock(&r->lock);
	int rc = r->revoked ? -ECANCELED : 0;
	if (!rc)
		memcpy(dst, src, n);
	pthread_rwlock_unlock(&r->lock);
	return rc;
}

void *stor_shm_conn_ext(struct rpc_req *req)
{
	struct shm_conn *sc = rpc_req_conn_data(req);
	return sc ? sc->ext : NULL;
}

int stor_shm_set_conn_ext(struct rpc_req *req, void *data, void (*free_fn)(void *))
{
	struct shm_conn *sc = rpc_req_conn_data(req);
	if (!sc)
		return -ENOMEM; /* no region registered: nothing to attach to */
	if (sc->ext)
		return -EEXIST;
	sc->ext = data;
	sc->ext_free = free_fn;
	return 0;
}
