/* sc_shm.c - the storage client's shared-memory reads (sc_shm.h).
 *
 * ARENA. One memfd of SC_SHM_SLOTS x SC_SHM_GRAIN bytes, sealed against
 * shrinking and growing (the server refuses an unsealed one: a shrink
 * would SIGBUS it), mapped here once. A read takes a run of free grains
 * (a bitmap under a mutex) for its reply bytes and gives them back once
 * the caller copied them out; a write copies its data into a run and
 * gives it back when the server answered (the server copies it out before
 * it answers). A read or write that timed out or lost its
 * connection keeps its grains for good (quarantined): the server may
 * still be copying into them, and reusing them would hand those late
 * bytes to another read.
 *
 * PEERS. Per server address: not registered, registering, registered
 * (region id), or off until a time (the server refused: over TCP, an old
 * server without the messages, a failed map). Only one registration per
 * server is in flight, so the descriptor passed on its connection pairs
 * with its request (rpc.h RPC_CALL_SEND_FD). A read answered -ESTALE
 * (the connection that held the region was replaced) forgets the
 * registration; the next read registers again.
 */
#include "storage_client/sc_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/status.h"

#define SC_SHM_GRAIN (256u << 10)
#define SC_SHM_SLOTS 256 /* grains: a 64 MiB arena */
#define SC_SHM_WORDS (SC_SHM_SLOTS / 64)
#define SC_SHM_OFF_MS 10000
#define SC_SHM_MAX_PEERS 64
#define SC_SHM_ADDR_MAX 64

enum peer_state { PS_NONE, PS_REGISTERING, PS_OK, PS_OFF };

struct sc_peer {
	char addr[SC_SHM_ADDR_MAX];
	enum peer_state st;
	uint64_t region;
	uint64_t off_until_ms;
	struct sc_shm *s;
};

struct sc_shm {
	struct rpc_client *rpc;
	int fd;
	uint8_t *base;
	pthread_mutex_t mu;     /* bitmap and peers */
	uint64_t used[SC_SHM_WORDS]; /* grains in use (bit i%64 of word i/64: grain i) */
	struct sc_peer peers[SC_SHM_MAX_PEERS];
	int npeers;
	int no_writes;          /* CFS_NO_SHM_WRITE=1: writes over the socket (A/B runs) */
	_Atomic uint64_t reads, fallbacks, registered, quarantined, writes, write_fallbacks;
};

/* One read in flight. */
struct sc_op {
	struct sc_shm *s;
	struct sc_peer *p;
	int first, n;           /* grains */
	sc_shm_done_fn done;
	void *arg;
};

struct sc_shm *sc_shm_new(const struct rpc_opts *ro)
{
	const char *e1 = getenv("CFS_NO_SHM"), *e2 = getenv("CFS_NO_LOCAL_SOCKET");
	if ((e1 && !strcmp(e1, "1")) || (e2 && !strcmp(e2, "1")) || ro->no_local_socket)
		return NULL;
	struct sc_shm *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->fd = -1;
	const char *e3 = getenv("CFS_NO_SHM_WRITE");
	s->no_writes = e3 && !strcmp(e3, "1");
	pthread_mutex_init(&s->mu, NULL);
	size_t size = (size_t)SC_SHM_SLOTS * SC_SHM_GRAIN;
	s->fd = memfd_create("chainfs-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (s->fd < 0 || ftruncate(s->fd, (off_t)size) < 0 ||
	    fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto fail;
	s->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		goto fail;
	}
	struct rpc_opts o = *ro;
	o.conns_per_peer = 1; /* a region lives on one connection */
	if (rpc_client_new(&o, &s->rpc))
		goto fail;
	return s;
fail:
	sc_shm_free(s);
	return NULL;
}

void sc_shm_free(struct sc_shm *s)
{
	if (!s)
		return;
	rpc_client_free(s->rpc);
	if (s->base)
		munmap(s->base, (size_t)SC_SHM_SLOTS * SC_SHM_GRAIN);
	if (s->fd >= 0)
		close(s->fd);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static int grain_used(const struct sc_shm *s, int i) { return (int)(s->used[i / 64] >> (i % 64)) & 1; }

static void grains_mark(struct sc_shm *s, int first, int n, int used)
{
	for (int i = first; i < first + n; i++) {
		if (used)
			s->used[i / 64] |= 1ull << (i % 64);
		else
			s->used[i / 64] &= ~(1ull << (i % 64));
	}
}

/* A run of N free grains (first fit): the first, or -1. Under mu. */
static int grains_take(struct sc_shm *s, int n)
{
	int run = 0;
	for (int i = 0; i < SC_SHM_SLOTS; i++) {
		if (run == 0 && i % 64 == 0 && s->used[i / 64] == ~0ull) {
			i += 63; /* a full word */
			continue;
		}
		run = grain_used(s, i) ? 0 : run + 1;
		if (run == n) {
			grains_mark(s, i - n + 1, n, 1);
			return i - n + 1;
		}
	}
	return -1;
}

static void grains_put(struct sc_shm *s, int first, int n)
{
	pthread_mutex_lock(&s->mu);
	grains_mark(s, first, n, 0);
	pthread_mutex_unlock(&s->mu);
}

static void reg_done(void *arg, const struct rpc_result *res)
{
	struct sc_peer *p = arg;
	struct sc_shm *s = p->s;
	struct sto_shm_reg_resp r;
	int ok = !res->status && !sto_shm_reg_resp_decode(res->payload, res->payload_len, &r);
	pthread_mutex_lock(&s->mu);
	if (ok) {
		p->st = PS_OK;
		p->region = r.region;
	} else {
		p->st = PS_OFF;
		p->off_until_ms = clock_mono_ms() + SC_SHM_OFF_MS;
	}
	pthread_mutex_unlock(&s->mu);
	if (ok)
		atomic_fetch_add(&s->registered, 1);
}

/* Starts P's registration (P is PS_REGISTERING). */
static void reg_start(struct sc_shm *s, struct sc_peer *p)
{
	struct rpc_peer *rp;
	char err[128];
	struct buf b;
	buf_init(&b);
	struct sto_shm_reg_req m = { .size = (uint64_t)SC_SHM_SLOTS * SC_SHM_GRAIN };
	int rc = sto_shm_reg_req_encode(&b, &m);
	if (!rc)
		rc = rpc_client_peer(s->rpc, p->addr, &rp, err, sizeof(err));
	if (!rc) {
		struct rpc_call cl = { .type = STO_MSG_SHM_REG, .payload = b.data,
				       .payload_len = (uint32_t)b.len, .flags = RPC_CALL_SEND_FD,
				       .send_fd = s->fd, .done = reg_done, .arg = p };
		rc = rpc_call_async(rp, &cl);
	}
	buf_fini(&b);
	if (rc) {
		struct rpc_result res = { .status = rc };
		reg_done(p, &res);
	}
}

/* What an answer with status ST says about P: -ESTALE forgets the
 * registration (its connection was replaced: register again); a server
 * that does not know the message or refused the window turns the path
 * off for a while. 1 when the request should go over the socket. */
static int answer_says_fallback(struct sc_shm *s, struct sc_peer *p, int st)
{
	if (st != -ESTALE && st != -CFS_EBADMSG_TYPE && st != -EFAULT && st != -CFS_EPROTO)
		return 0;
	pthread_mutex_lock(&s->mu);
	if (st == -ESTALE) {
		p->st = PS_NONE;
	} else {
		p->st = PS_OFF;
		p->off_until_ms = clock_mono_ms() + SC_SHM_OFF_MS;
	}
	pthread_mutex_unlock(&s->mu);
	return 1;
}

static void read_done(void *arg, const struct rpc_result *res)
{
	struct sc_op *op = arg;
	struct sc_shm *s = op->s;
	int st = res->status;
	if (st == -CFS_ETIMEDOUT || st == -CFS_ECLOSED) {
		/* The server may still write into these grains. */
		atomic_fetch_add(&s->quarantined, (uint64_t)op->n);
		op->done(op->arg, res, NULL);
		free(op);
		return;
	}
	if (answer_says_fallback(s, op->p, st)) {
		grains_put(s, op->first, op->n);
		atomic_fetch_add(&s->fallbacks, 1);
		struct rpc_result r2 = { .status = -EAGAIN };
		op->done(op->arg, &r2, NULL);
		free(op);
		return;
	}
	atomic_fetch_add(&s->reads, 1);
	op->done(op->arg, res, s->base + (size_t)op->first * SC_SHM_GRAIN);
	free(op);
}

/* Grains for N bytes (at least one). */
static uint64_t grains_for(uint64_t cap)
{
	uint64_t n = (cap + SC_SHM_GRAIN - 1) / SC_SHM_GRAIN;
	return n ? n : 1;
}

/* A registered peer for ADDR and a run of N free grains on it: 0 with
 * *P, *FIRST and *REGION set (the grains are the caller's), or <0 (use
 * the socket): -EAGAIN (not registered yet; a registration was started),
 * -ENOSPC (no free run), -EOPNOTSUPP (off for this server, or too big). */
static int take(struct sc_shm *s, const char *addr, uint64_t n, struct sc_peer **pp, int *first,
		uint64_t *region)
{
	if (n > SC_SHM_SLOTS || strlen(addr) >= SC_SHM_ADDR_MAX)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&s->mu);
	struct sc_peer *p = NULL;
	for (int i = 0; i < s->npeers && !p; i++)
		if (!strcmp(s->peers[i].addr, addr))
			p = &s->peers[i];
	if (!p && s->npeers < SC_SHM_MAX_PEERS) {
		p = &s->peers[s->npeers++];
		snprintf(p->addr, sizeof(p->addr), "%s", addr);
		p->s = s;
	}
	int rc = 0;
	if (!p) {
		rc = -EOPNOTSUPP;
	} else if (p->st == PS_OFF && clock_mono_ms() >= p->off_until_ms) {
		p->st = PS_NONE;
	}
	if (!rc && p->st != PS_OK) {
		rc = p->st == PS_OFF ? -EOPNOTSUPP : -EAGAIN;
		if (p->st == PS_NONE) {
			p->st = PS_REGISTERING;
			pthread_mutex_unlock(&s->mu);
			reg_start(s, p);
			return rc;
		}
	}
	if (!rc && (*first = grains_take(s, (int)n)) < 0)
		rc = -ENOSPC;
	if (!rc) {
		*region = p->region;
		*pp = p;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int sc_shm_read(struct sc_shm *s, const char *addr, const struct sto_read_req *m, uint64_t cap,
		sc_shm_done_fn done, void *arg)
{
	if (!s)
		return -EOPNOTSUPP;
	uint64_t n = grains_for(cap);
	struct sc_peer *p = NULL;
	int first = -1;
	uint64_t region = 0;
	int rc = take(s, addr, n, &p, &first, &region);
	if (rc) {
		atomic_fetch_add(&s->fallbacks, 1);
		return rc;
	}
	struct sc_op *op = malloc(sizeof(*op));
	struct buf b;
	buf_init(&b);
	struct sto_shm_at at = { .region = region, .off = (uint64_t)first * SC_SHM_GRAIN,
				 .cap = n * SC_SHM_GRAIN };
	struct rpc_peer *rp;
	char err[128];
	rc = op ? sto_shm_read_req_encode(&b, &at, m) : -ENOMEM;
	if (!rc)
		rc = rpc_client_peer(s->rpc, addr, &rp, err, sizeof(err));
	if (!rc) {
		*op = (struct sc_op){ .s = s, .p = p, .first = first, .n = (int)n, .done = done,
				      .arg = arg };
		struct rpc_call cl = { .type = STO_MSG_SHM_READ, .payload = b.data,
				       .payload_len = (uint32_t)b.len, .done = read_done, .arg = op };
		rc = rpc_call_async(rp, &cl);
	}
	buf_fini(&b);
	if (rc) {
		free(op);
		grains_put(s, first, (int)n);
		atomic_fetch_add(&s->fallbacks, 1);
	}
	return rc;
}

int sc_shm_write(struct sc_shm *s, const char *addr, const struct sto_write_req *m,
		 const void *data, struct buf *resp, int *fallback)
{
	*fallback = 1;
	if (!s || s->no_writes)
		return -EOPNOTSUPP;
	uint64_t n = grains_for(m->len);
	struct sc_peer *p = NULL;
	int first = -1;
	uint64_t region = 0;
	int rc = take(s, addr, n, &p, &first, &region);
	if (rc) {
		atomic_fetch_add(&s->write_fallbacks, 1);
		return rc;
	}
	uint8_t *slot = s->base + (size_t)first * SC_SHM_GRAIN;
	memcpy(slot, data, m->len);
	struct buf b;
	buf_init(&b);
	struct sto_shm_at at = { .region = region, .off = (uint64_t)first * SC_SHM_GRAIN,
				 .cap = n * SC_SHM_GRAIN };
	struct rpc_peer *rp;
	char err[128];
	rc = sto_shm_write_req_encode(&b, &at, m);
	if (!rc)
		rc = rpc_client_peer(s->rpc, addr, &rp, err, sizeof(err));
	if (rc) {
		/* Nothing was sent. */
		buf_fini(&b);
		grains_put(s, first, (int)n);
		atomic_fetch_add(&s->write_fallbacks, 1);
		return rc;
	}
	struct rpc_call cl = { .type = STO_MSG_SHM_WRITE, .payload = b.data,
			       .payload_len = (uint32_t)b.len };
	buf_reset(resp);
	rc = rpc_call(rp, &cl, resp, NULL);
	buf_fini(&b);
	if (rc == -CFS_ETIMEDOUT || rc == -CFS_ECLOSED) {
		/* The server may not have copied the bytes out yet: never
		 * hand these grains to another request. The write's fate is
		 * unknown, as over the socket; the caller retries it with the
		 * same (channel, seq). */
		atomic_fetch_add(&s->quarantined, n);
		*fallback = 0;
		return rc;
	}
	grains_put(s, first, (int)n);
	if (answer_says_fallback(s, p, rc)) {
		atomic_fetch_add(&s->write_fallbacks, 1);
		return -EAGAIN;
	}
	*fallback = 0;
	atomic_fetch_add(&s->writes, 1);
	return rc;
}

void sc_shm_release(struct sc_shm *s, const uint8_t *data, uint64_t cap)
{
	grains_put(s, (int)((size_t)(data - s->base) / SC_SHM_GRAIN), (int)grains_for(cap));
}

void sc_shm_get_stats(const struct sc_shm *s, struct sc_shm_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!s)
		return;
	out->reads = atomic_load(&s->reads);
	out->fallbacks = atomic_load(&s->fallbacks);
	out->registered = atomic_load(&s->registered);
	out->quarantined = atomic_load(&s->quarantined);
	out->writes = atomic_load(&s->writes);
	out->write_fallbacks = atomic_load(&s->write_fallbacks);
}
