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
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/status.h"

#define SC_SHM_GRAIN (256u << 10)
#define SC_SHM_SLOTS 256 /* grains: a 64 MiB arena (sc_shm_new) */
#define SC_SHM_MAX_SLOTS 1024 /* sc_shm_new_arena: up to 256 MiB */
#define SC_SHM_WORDS (SC_SHM_MAX_SLOTS / 64)
#define SC_SHM_OFF_MS 10000
#define SC_SHM_MAX_PEERS 64
#define SC_SHM_ADDR_MAX 64
#define SC_SHM_REVOKE_MS 60000 /* how long a revocation waits for its answer */
#define SC_SHM_MAX_MEMS 16 /* the arena and 15 of the caller's (the server takes 16) */

/* PS_DROP: registering when its memory was removed; the answer's region
 * is unregistered at once (it must not outlive the memory's slot). */
enum peer_state { PS_NONE, PS_REGISTERING, PS_OK, PS_OFF, PS_DROP };

/* One memory's registration with one server. */
struct sc_reg {
	struct sc_peer *p;
	int mem;
	enum peer_state st;
	uint64_t region;
	uint64_t off_until_ms;
};

struct sc_peer {
	char addr[SC_SHM_ADDR_MAX];
	struct sc_reg r[SC_SHM_MAX_MEMS];
	struct sc_shm *s;
};

/* A memfd the server may map: the arena (0) or the caller's (1..). A
 * slot is free when fd < 0; a removed memory (dying) keeps its slot, and
 * its descriptor, until its registrations in flight answered (the RPC
 * layer borrows the descriptor until then) and its requests in flight
 * completed, so that a late completion never touches a successor. */
struct sc_mem {
	int fd;
	uint8_t *base;
	uint64_t size;
	int dying;       /* removed: no new request uses it */
	int regs;        /* registrations in flight */
	int inflight;    /* requests in flight with bytes in it */
};

struct sc_shm {
	struct rpc_client *rpc;
	int fd;
	uint8_t *base;
	int slots;              /* grains in the arena */
	pthread_mutex_t mu;     /* bitmap, peers and mems */
	uint64_t used[SC_SHM_WORDS]; /* grains in use (bit i%64 of word i/64: grain i) */
	struct sc_peer peers[SC_SHM_MAX_PEERS];
	int npeers;
	struct sc_mem mem[SC_SHM_MAX_MEMS];
	int nmem;
	int no_writes;          /* CFS_NO_SHM_WRITE=1: writes over the socket (A/B runs) */
	_Atomic uint64_t reads, fallbacks, registered, quarantined, writes, write_fallbacks;
	_Atomic uint64_t direct_reads, direct_writes, direct_lost, unregs;
};

/* Where a request's bytes are: a run of arena grains (FIRST >= 0) or the
 * caller's registered memory (FIRST -1). */
struct sc_where {
	struct sc_reg *reg;
	int first, n;
	int mem;                /* FIRST -1: the caller's memory slot */
	struct sto_shm_at at;
};

/* One read in flight. */
struct sc_op {
	struct sc_shm *s;
	struct sc_where w;
	int st;                 /* the failure a revocation reports afterwards */
	uint8_t *dst;           /* where the bytes land */
	sc_shm_done_fn done;
	void *arg;
};

struct sc_shm *sc_shm_new(const struct rpc_opts *ro)
{
	return sc_shm_new_arena(ro, (uint64_t)SC_SHM_SLOTS * SC_SHM_GRAIN);
}

struct sc_shm *sc_shm_new_arena(const struct rpc_opts *ro, uint64_t arena_bytes)
{
	const char *e1 = getenv("CFS_NO_SHM"), *e2 = getenv("CFS_NO_LOCAL_SOCKET");
	if ((e1 && !strcmp(e1, "1")) || (e2 && !strcmp(e2, "1")) || ro->no_local_socket)
		return NULL;
	struct sc_shm *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->fd = -1;
	uint64_t slots = arena_bytes / SC_SHM_GRAIN;
	s->slots = slots < SC_SHM_SLOTS ? SC_SHM_SLOTS
		   : slots > SC_SHM_MAX_SLOTS ? SC_SHM_MAX_SLOTS : (int)slots;
	const char *e3 = getenv("CFS_NO_SHM_WRITE");
	s->no_writes = e3 && !strcmp(e3, "1");
	pthread_mutex_init(&s->mu, NULL);
	size_t size = (size_t)s->slots * SC_SHM_GRAIN;
	s->fd = memfd_create("chainfs-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (s->fd < 0 || ftruncate(s->fd, (off_t)size) < 0 ||
	    fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto fail;
	s->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		goto fail;
	}
	s->mem[0] = (struct sc_mem){ .fd = s->fd, .base = s->base, .size = size };
	s->nmem = 1;
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
		munmap(s->base, (size_t)s->slots * SC_SHM_GRAIN);
	if (s->fd >= 0)
		close(s->fd);
	for (int i = 1; i < s->nmem; i++)
		if (s->mem[i].fd >= 0)
			close(s->mem[i].fd);
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
	for (int i = 0; i < s->slots; i++) {
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

static void unreg_send(struct sc_shm *s, const char *addr, uint64_t region,
		       void (*then)(void *arg, int confirmed), void *arg);

/* Frees memory slot M once it was removed and nothing refers to it any
 * more (its descriptor: no registration in flight borrows it). Under mu. */
static void mem_settle(struct sc_shm *s, int m)
{
	struct sc_mem *x = &s->mem[m];
	if (m == 0 || !x->dying || x->regs || x->inflight || x->fd < 0)
		return;
	close(x->fd);
	*x = (struct sc_mem){ .fd = -1 };
}

static void reg_done(void *arg, const struct rpc_result *res)
{
	struct sc_reg *g = arg;
	struct sc_shm *s = g->p->s;
	struct sto_shm_reg_resp r;
	int ok = !res->status && !sto_shm_reg_resp_decode(res->payload, res->payload_len, &r);
	int drop = 0;
	pthread_mutex_lock(&s->mu);
	if (g->st == PS_DROP) {
		/* Its memory was removed meanwhile. */
		g->st = PS_NONE;
		drop = ok;
	} else if (ok) {
		g->st = PS_OK;
		g->region = r.region;
	} else {
		g->st = PS_OFF;
		g->off_until_ms = clock_mono_ms() + SC_SHM_OFF_MS;
	}
	s->mem[g->mem].regs--;
	mem_settle(s, g->mem);
	pthread_mutex_unlock(&s->mu);
	if (ok)
		atomic_fetch_add(&s->registered, 1);
	if (drop)
		unreg_send(s, g->p->addr, r.region, NULL, NULL);
}

/* Starts G's registration (G is PS_REGISTERING; FD and SIZE its memory's,
 * read under mu by the caller: memories are never removed). */
static void reg_start(struct sc_shm *s, struct sc_reg *g, int fd, uint64_t size)
{
	struct rpc_peer *rp;
	char err[128];
	struct buf b;
	buf_init(&b);
	struct sto_shm_reg_req m = { .size = size };
	int rc = sto_shm_reg_req_encode(&b, &m);
	if (!rc)
		rc = rpc_client_peer(s->rpc, g->p->addr, &rp, err, sizeof(err));
	if (!rc) {
		struct rpc_call cl = { .type = STO_MSG_SHM_REG, .payload = b.data,
				       .payload_len = (uint32_t)b.len, .flags = RPC_CALL_SEND_FD,
				       .send_fd = fd, .done = reg_done, .arg = g };
		rc = rpc_call_async(rp, &cl);
	}
	buf_fini(&b);
	if (rc) {
		struct rpc_result res = { .status = rc };
		reg_done(g, &res);
	}
}

/* What an answer with status ST says about registration G: -ESTALE
 * forgets every registration with its server (the connection that held
 * them was replaced: register again); a server that does not know the
 * message or refused the window turns G off for a while. 1 when the
 * request should go over the socket. */
static int answer_says_fallback(struct sc_shm *s, struct sc_reg *g, int st)
{
	if (st == -ECANCELED)
		return 1; /* the region was revoked under this read (read_done) */
	if (st != -ESTALE && st != -CFS_EBADMSG_TYPE && st != -EFAULT && st != -CFS_EPROTO)
		return 0;
	pthread_mutex_lock(&s->mu);
	if (st == -ESTALE) {
		for (int m = 0; m < SC_SHM_MAX_MEMS; m++)
			if (g->p->r[m].st == PS_OK)
				g->p->r[m].st = PS_NONE;
	} else {
		g->st = PS_OFF;
		g->off_until_ms = clock_mono_ms() + SC_SHM_OFF_MS;
	}
	pthread_mutex_unlock(&s->mu);
	return 1;
}

/* Request W is over: its grains back (unless QUARANTINE: the server may
 * still use them), or one use of the caller's memory less. */
static void where_end(struct sc_shm *s, const struct sc_where *w, int quarantine)
{
	if (w->first >= 0) {
		if (quarantine)
			atomic_fetch_add(&s->quarantined, (uint64_t)w->n);
		else
			grains_put(s, w->first, w->n);
		return;
	}
	pthread_mutex_lock(&s->mu);
	s->mem[w->mem].inflight--;
	mem_settle(s, w->mem);
	pthread_mutex_unlock(&s->mu);
}

static void where_put(struct sc_shm *s, const struct sc_where *w) { where_end(s, w, 0); }

/* A direct read failed (OP->st) and its region's revocation was answered
 * (or could not be: counted in direct_lost). */
static void read_revoked(void *arg, int confirmed)
{
	struct sc_op *op = arg;
	struct sc_shm *s = op->s;
	if (!confirmed)
		atomic_fetch_add(&s->direct_lost, 1);
	where_end(s, &op->w, 0);
	struct rpc_result r = { .status = op->st };
	op->done(op->arg, &r, NULL);
	free(op);
}

static void read_done(void *arg, const struct rpc_result *res)
{
	struct sc_op *op = arg;
	struct sc_shm *s = op->s;
	int st = res->status;
	if ((st == -CFS_ETIMEDOUT || st == -CFS_ECLOSED) && op->w.first < 0) {
		/* The server may still be about to copy into the caller's
		 * memory: revoke the region (SHM_UNREG: once answered, nothing
		 * more is copied into it) before the caller hears of the
		 * failure and reuses the memory. */
		op->st = st;
		struct sc_reg *g = op->w.reg;
		pthread_mutex_lock(&s->mu);
		if (g->st == PS_OK && g->region == op->w.at.region)
			g->st = PS_NONE; /* the next request registers again */
		pthread_mutex_unlock(&s->mu);
		unreg_send(s, g->p->addr, op->w.at.region, read_revoked, op);
		return;
	}
	if (st == -CFS_ETIMEDOUT || st == -CFS_ECLOSED) {
		/* The server may still write into these bytes: arena grains
		 * are never reused. */
		where_end(s, &op->w, 1);
		op->done(op->arg, res, NULL);
		free(op);
		return;
	}
	if (answer_says_fallback(s, op->w.reg, st)) {
		where_put(s, &op->w);
		atomic_fetch_add(&s->fallbacks, 1);
		struct rpc_result r2 = { .status = -EAGAIN };
		op->done(op->arg, &r2, NULL);
		free(op);
		return;
	}
	atomic_fetch_add(&s->reads, 1);
	if (op->w.first < 0)
		atomic_fetch_add(&s->direct_reads, 1);
	op->done(op->arg, res, op->dst);
	if (op->w.first < 0)
		where_end(s, &op->w, 0);
	free(op);
}

/* Grains for N bytes (at least one). */
static uint64_t grains_for(uint64_t cap)
{
	uint64_t n = (cap + SC_SHM_GRAIN - 1) / SC_SHM_GRAIN;
	return n ? n : 1;
}

/* The memory (>= 1) of the caller's holding [P, P+LEN), or 0. Under mu. */
static int mem_of(const struct sc_shm *s, const void *p, uint64_t len)
{
	const uint8_t *q = p;
	for (int m = 1; q && m < s->nmem; m++) {
		const struct sc_mem *x = &s->mem[m];
		if (x->fd < 0 || x->dying)
			continue;
		if (q >= x->base && len <= x->size && (uint64_t)(q - x->base) <= x->size - len)
			return m;
	}
	return 0;
}

/* 1 when [P, P+LEN) lies in the arena. */
static int in_arena(const struct sc_shm *s, const void *p, uint64_t len)
{
	const uint8_t *q = p;
	uint64_t size = (uint64_t)s->slots * SC_SHM_GRAIN;
	return q && q >= s->base && len <= size && (uint64_t)(q - s->base) <= size - len;
}

/* G usable now: 0; else starts its registration if none is in flight
 * (unlocks and relocks mu) and returns -EAGAIN, or -EOPNOTSUPP while it
 * is off. Under mu. */
static int reg_ready(struct sc_shm *s, struct sc_reg *g)
{
	if (g->st == PS_OFF && clock_mono_ms() >= g->off_until_ms)
		g->st = PS_NONE;
	if (g->st == PS_OK)
		return 0;
	if (g->st == PS_NONE) {
		g->st = PS_REGISTERING;
		s->mem[g->mem].regs++;
		int fd = s->mem[g->mem].fd;
		uint64_t size = s->mem[g->mem].size;
		pthread_mutex_unlock(&s->mu);
		reg_start(s, g, fd, size);
		pthread_mutex_lock(&s->mu);
		return -EAGAIN;
	}
	return g->st == PS_OFF ? -EOPNOTSUPP : -EAGAIN;
}

/* ADDR's peer (made on first use), or NULL when the table is full. Under
 * mu; ADDR fits SC_SHM_ADDR_MAX. */
static struct sc_peer *peer_of(struct sc_shm *s, const char *addr)
{
	for (int i = 0; i < s->npeers; i++)
		if (!strcmp(s->peers[i].addr, addr))
			return &s->peers[i];
	if (s->npeers == SC_SHM_MAX_PEERS)
		return NULL;
	struct sc_peer *pe = &s->peers[s->npeers++];
	snprintf(pe->addr, sizeof(pe->addr), "%s", addr);
	pe->s = s;
	for (int m = 0; m < SC_SHM_MAX_MEMS; m++)
		pe->r[m] = (struct sc_reg){ .p = pe, .mem = m };
	return pe;
}

/* Where LEN bytes for a request to ADDR go: in the caller's registered
 * memory when [P, P+LEN) lies in one registered with that server (P may
 * be NULL), else a run of free arena grains (the caller's to give back
 * with where_put). 0 with *W set, or <0 (use the socket): -EAGAIN (the
 * arena is not registered yet; a registration was started), -ENOSPC (no
 * free run), -EOPNOTSUPP (off for this server, or too big). */
static int take(struct sc_shm *s, const char *addr, const void *p, uint64_t len,
		struct sc_where *w)
{
	uint64_t n = grains_for(len);
	if (strlen(addr) >= SC_SHM_ADDR_MAX)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&s->mu);
	struct sc_peer *pe = peer_of(s, addr);
	int rc = pe ? 0 : -EOPNOTSUPP;
	if (!rc && in_arena(s, p, len)) {
		/* A buffer of sc_shm_buf_get: the bytes are in place. */
		rc = reg_ready(s, &pe->r[0]);
		if (!rc) {
			s->mem[0].inflight++;
			*w = (struct sc_where){ .reg = &pe->r[0], .first = -1, .mem = 0,
						.at = { .region = pe->r[0].region,
							.off = (uint64_t)((const uint8_t *)p - s->base),
							.cap = len } };
		}
		pthread_mutex_unlock(&s->mu);
		return rc;
	}
	int m = rc ? 0 : mem_of(s, p, len);
	if (m && reg_ready(s, &pe->r[m]) == 0) {
		const uint8_t *q = p;
		s->mem[m].inflight++;
		*w = (struct sc_where){ .reg = &pe->r[m], .first = -1, .mem = m,
					.at = { .region = pe->r[m].region,
						.off = (uint64_t)(q - s->mem[m].base), .cap = len } };
		pthread_mutex_unlock(&s->mu);
		return 0;
	}
	/* The arena (also while the caller's memory registers). */
	if (!rc && n > (uint64_t)s->slots)
		rc = -EOPNOTSUPP;
	if (!rc)
		rc = reg_ready(s, &pe->r[0]);
	int first = -1;
	if (!rc && (first = grains_take(s, (int)n)) < 0)
		rc = -ENOSPC;
	if (!rc)
		*w = (struct sc_where){ .reg = &pe->r[0], .first = first, .n = (int)n,
					.at = { .region = pe->r[0].region,
						.off = (uint64_t)first * SC_SHM_GRAIN,
						.cap = n * SC_SHM_GRAIN } };
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int sc_shm_read(struct sc_shm *s, const char *addr, const struct sto_read_req *m, uint64_t cap,
		void *dst, sc_shm_done_fn done, void *arg)
{
	if (!s)
		return -EOPNOTSUPP;
	struct sc_where w;
	int rc = take(s, addr, dst, cap, &w);
	if (rc) {
		atomic_fetch_add(&s->fallbacks, 1);
		return rc;
	}
	struct sc_op *op = malloc(sizeof(*op));
	struct buf b;
	buf_init(&b);
	struct rpc_peer *rp;
	char err[128];
	rc = op ? sto_shm_read_req_encode(&b, &w.at, m) : -ENOMEM;
	if (!rc)
		rc = rpc_client_peer(s->rpc, addr, &rp, err, sizeof(err));
	if (!rc) {
		*op = (struct sc_op){ .s = s, .w = w, .done = done, .arg = arg,
				      .dst = w.first >= 0 ? s->base + (size_t)w.at.off : dst };
		struct rpc_call cl = { .type = STO_MSG_SHM_READ, .payload = b.data,
				       .payload_len = (uint32_t)b.len, .done = read_done, .arg = op };
		rc = rpc_call_async(rp, &cl);
	}
	buf_fini(&b);
	if (rc) {
		free(op);
		where_put(s, &w);
		atomic_fetch_add(&s->fallbacks, 1);
	}
	return rc;
}

int sc_shm_readv(struct sc_shm *s, const char *addr, const struct sto_read_req *m,
		 const struct iovec *iov, int niov, sc_shm_done_fn done, void *arg)
{
	if (!s || niov <= 0 || (uint32_t)niov != m->n || strlen(addr) >= SC_SHM_ADDR_MAX)
		return -EOPNOTSUPP;
	/* Most scattered reads are into memory nobody registered: find that
	 * out before allocating anything. */
	pthread_mutex_lock(&s->mu);
	struct sc_peer *pe = peer_of(s, addr);
	int mi = pe ? mem_of(s, iov[0].iov_base, iov[0].iov_len) : 0;
	for (int i = 1; mi && i < niov; i++)
		if (mem_of(s, iov[i].iov_base, iov[i].iov_len) != mi)
			mi = 0;
	int rc = mi ? reg_ready(s, &pe->r[mi]) : -EOPNOTSUPP;
	struct sc_where w;
	if (rc) {
		pthread_mutex_unlock(&s->mu);
		return rc;
	}
	/* Counted in flight: the memory and its base stay until where_put. */
	s->mem[mi].inflight++;
	w = (struct sc_where){ .reg = &pe->r[mi], .first = -1, .mem = mi,
			       .at = { .region = pe->r[mi].region } };
	const uint8_t *base = s->mem[mi].base;
	pthread_mutex_unlock(&s->mu);
	uint64_t *offs = malloc((size_t)niov * sizeof(*offs));
	struct sc_op *op = malloc(sizeof(*op));
	struct buf b;
	buf_init(&b);
	struct rpc_peer *rp;
	char err[128];
	if (!offs || !op)
		rc = -ENOMEM;
	for (int i = 0; !rc && i < niov; i++)
		offs[i] = (uint64_t)((const uint8_t *)iov[i].iov_base - base);
	if (!rc)
		rc = sto_shm_readv_req_encode(&b, w.at.region, offs, m);
	if (!rc)
		rc = rpc_client_peer(s->rpc, addr, &rp, err, sizeof(err));
	if (!rc) {
		*op = (struct sc_op){ .s = s, .w = w, .done = done, .arg = arg,
				      .dst = iov[0].iov_base };
		struct rpc_call cl = { .type = STO_MSG_SHM_READV, .payload = b.data,
				       .payload_len = (uint32_t)b.len, .done = read_done, .arg = op };
		rc = rpc_call_async(rp, &cl);
	}
	buf_fini(&b);
	free(offs);
	if (rc) {
		free(op);
		where_put(s, &w); /* not sent */
		atomic_fetch_add(&s->fallbacks, 1);
	}
	return rc;
}

/* Puts a write's bytes where the server can read them: nothing to do when
 * DATA lies in the caller's registered memory, else a copy into arena
 * grains. 0 with *W set (give back with where_put), or <0: use the socket. */
static int stage_write(struct sc_shm *s, const char *addr, const struct sto_write_req *m,
		       const void *data, struct sc_where *w)
{
	if (!s || s->no_writes)
		return -EOPNOTSUPP;
	int rc = take(s, addr, data, m->len, w);
	if (rc) {
		atomic_fetch_add(&s->write_fallbacks, 1);
		return rc;
	}
	if (w->first >= 0)
		memcpy(s->base + (size_t)w->at.off, data, m->len);
	return 0;
}

int sc_shm_write(struct sc_shm *s, const char *addr, const struct sto_write_req *m,
		 const void *data, struct buf *resp, int *fallback)
{
	*fallback = 1;
	struct sc_where w;
	int rc = stage_write(s, addr, m, data, &w);
	if (rc)
		return rc;
	struct buf b;
	buf_init(&b);
	struct rpc_peer *rp;
	char err[128];
	rc = sto_shm_write_req_encode(&b, &w.at, m);
	if (!rc)
		rc = rpc_client_peer(s->rpc, addr, &rp, err, sizeof(err));
	if (rc) {
		/* Nothing was sent. */
		buf_fini(&b);
		where_put(s, &w);
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
		where_end(s, &w, 1);
		*fallback = 0;
		return rc;
	}
	where_put(s, &w);
	if (answer_says_fallback(s, w.reg, rc)) {
		atomic_fetch_add(&s->write_fallbacks, 1);
		return -EAGAIN;
	}
	*fallback = 0;
	atomic_fetch_add(&s->writes, 1);
	if (w.first < 0)
		atomic_fetch_add(&s->direct_writes, 1);
	return rc;
}

/* One asynchronous write in flight. */
struct sc_wop {
	struct sc_shm *s;
	struct sc_where w;
	sc_shm_write_fn done;
	void *arg;
};

static void write_async_done(void *arg, const struct rpc_result *res)
{
	struct sc_wop *op = arg;
	struct sc_shm *s = op->s;
	int st = res->status, fallback = 0;
	if (st == -CFS_ETIMEDOUT || st == -CFS_ECLOSED) {
		where_end(s, &op->w, 1);
	} else {
		where_put(s, &op->w);
		fallback = answer_says_fallback(s, op->w.reg, st);
		if (fallback) {
			atomic_fetch_add(&s->write_fallbacks, 1);
		} else {
			atomic_fetch_add(&s->writes, 1);
			if (op->w.first < 0)
				atomic_fetch_add(&s->direct_writes, 1);
		}
	}
	op->done(op->arg, res, fallback);
	free(op);
}

int sc_shm_write_async(struct sc_shm *s, const char *addr, const struct sto_write_req *m,
		       const void *data, uint32_t timeout_ms, sc_shm_write_fn done, void *arg)
{
	struct sc_where w;
	int rc = stage_write(s, addr, m, data, &w);
	if (rc)
		return rc;
	struct sc_wop *op = malloc(sizeof(*op));
	struct buf b;
	buf_init(&b);
	struct rpc_peer *rp;
	char err[128];
	rc = op ? sto_shm_write_req_encode(&b, &w.at, m) : -ENOMEM;
	if (!rc)
		rc = rpc_client_peer(s->rpc, addr, &rp, err, sizeof(err));
	if (!rc) {
		*op = (struct sc_wop){ .s = s, .w = w, .done = done, .arg = arg };
		struct rpc_call cl = { .type = STO_MSG_SHM_WRITE, .payload = b.data,
				       .payload_len = (uint32_t)b.len, .timeout_ms = timeout_ms,
				       .done = write_async_done, .arg = op };
		rc = rpc_call_async(rp, &cl);
	}
	buf_fini(&b);
	if (rc) {
		free(op);
		where_put(s, &w);
		atomic_fetch_add(&s->write_fallbacks, 1);
	}
	return rc;
}

int sc_shm_mem_add(struct sc_shm *s, int fd, void *base, uint64_t size)
{
	if (!s)
		return -EOPNOTSUPP;
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);
	if (!base || !size || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || seals < 0 ||
	    !(seals & F_SEAL_SHRINK) || (uint64_t)st.st_size < size)
		return -EBADF;
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0)
		return -errno;
	const uint8_t *b = base;
	pthread_mutex_lock(&s->mu);
	int m = 0, rc = 0;
	for (int i = 1; i < s->nmem && !rc; i++) {
		const struct sc_mem *x = &s->mem[i];
		if (x->fd < 0) {
			m = m ? m : i;
		} else if (!x->dying && b < x->base + x->size && x->base < b + size) {
			rc = -EEXIST; /* overlaps one added before */
		}
	}
	if (!rc && !m)
		m = s->nmem < SC_SHM_MAX_MEMS ? s->nmem++ : 0;
	if (!rc && !m)
		rc = -ENOSPC;
	if (!rc)
		s->mem[m] = (struct sc_mem){ .fd = dfd, .base = base, .size = size };
	pthread_mutex_unlock(&s->mu);
	if (rc)
		close(dfd);
	return rc;
}

/* One SHM_UNREG in flight. */
struct sc_unreg {
	struct sc_shm *s;
	void (*then)(void *arg, int confirmed);
	void *arg;
};

static void unreg_done(void *arg, const struct rpc_result *res)
{
	struct sc_unreg *u = arg;
	/* 0: revoked now. -ESTALE: the connection that held it has no such
	 * region any more; only the same connection (not a replaced one)
	 * would make that a confirmation, so it counts as not confirmed. */
	int ok = res->status == 0;
	if (ok)
		atomic_fetch_add(&u->s->unregs, 1);
	if (u->then)
		u->then(u->arg, ok);
	free(u);
}

/* Sends SHM_UNREG of REGION to ADDR; THEN(ARG, CONFIRMED) (may be NULL)
 * runs once: on an RPC loop thread with the answer, or here when nothing
 * could be sent. Never blocks. */
static void unreg_send(struct sc_shm *s, const char *addr, uint64_t region,
		       void (*then)(void *arg, int confirmed), void *arg)
{
	struct sc_unreg *u = malloc(sizeof(*u));
	struct buf b;
	buf_init(&b);
	struct sto_shm_unreg_req m = { .region = region };
	struct rpc_peer *rp;
	char err[128];
	int rc = u ? sto_shm_unreg_req_encode(&b, &m) : -ENOMEM;
	if (!rc)
		rc = rpc_client_peer(s->rpc, addr, &rp, err, sizeof(err));
	if (!rc) {
		*u = (struct sc_unreg){ .s = s, .then = then, .arg = arg };
		/* A revocation waits for a slow server rather than give up on
		 * confirmation (its read already failed; a dead server closes
		 * the connection at once). */
		struct rpc_call cl = { .type = STO_MSG_SHM_UNREG, .payload = b.data,
				       .payload_len = (uint32_t)b.len, .done = unreg_done,
				       .arg = u, .timeout_ms = then ? SC_SHM_REVOKE_MS : 0 };
		rc = rpc_call_async(rp, &cl);
	}
	buf_fini(&b);
	if (rc) {
		free(u);
		if (then)
			then(arg, 0);
	}
}

int sc_shm_mem_del(struct sc_shm *s, const void *base)
{
	if (!s)
		return -EOPNOTSUPP;
	struct {
		char addr[SC_SHM_ADDR_MAX];
		uint64_t region;
	} un[SC_SHM_MAX_PEERS];
	int nun = 0;
	pthread_mutex_lock(&s->mu);
	int m = 1;
	while (m < s->nmem && (s->mem[m].fd < 0 || s->mem[m].dying || s->mem[m].base != base))
		m++;
	if (m == s->nmem) {
		pthread_mutex_unlock(&s->mu);
		return -ENOENT;
	}
	s->mem[m].dying = 1;
	for (int i = 0; i < s->npeers; i++) {
		struct sc_reg *g = &s->peers[i].r[m];
		if (g->st == PS_OK) {
			memcpy(un[nun].addr, s->peers[i].addr, SC_SHM_ADDR_MAX);
			un[nun++].region = g->region;
			g->st = PS_NONE;
		} else if (g->st == PS_REGISTERING) {
			g->st = PS_DROP;
		} else if (g->st == PS_OFF) {
			g->st = PS_NONE;
		}
	}
	mem_settle(s, m);
	pthread_mutex_unlock(&s->mu);
	for (int i = 0; i < nun; i++)
		unreg_send(s, un[i].addr, un[i].region, NULL, NULL);
	return 0;
}

void *sc_shm_buf_get(struct sc_shm *s, uint64_t len)
{
	if (!s || !len || s->no_writes || len > (uint64_t)s->slots * SC_SHM_GRAIN)
		return NULL;
	pthread_mutex_lock(&s->mu);
	int first = grains_take(s, (int)grains_for(len));
	pthread_mutex_unlock(&s->mu);
	return first < 0 ? NULL : s->base + (size_t)first * SC_SHM_GRAIN;
}

int sc_shm_buf_owns(const struct sc_shm *s, const void *p)
{
	return s && in_arena(s, p, 1);
}

void *sc_shm_arena_mem(const struct sc_shm *s, uint64_t *size)
{
	*size = s ? (uint64_t)s->slots * SC_SHM_GRAIN : 0;
	return s ? s->base : NULL;
}

void sc_shm_buf_put(struct sc_shm *s, void *p, uint64_t len, int quarantine)
{
	int first = (int)((size_t)((uint8_t *)p - s->base) / SC_SHM_GRAIN);
	int n = (int)grains_for(len);
	if (quarantine)
		atomic_fetch_add(&s->quarantined, (uint64_t)n);
	else
		grains_put(s, first, n);
}

void sc_shm_release(struct sc_shm *s, const uint8_t *data, uint64_t cap)
{
	size_t asize = (size_t)s->slots * SC_SHM_GRAIN;
	if (data < s->base || data >= s->base + asize)
		return; /* the caller's own memory */
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
	out->direct_reads = atomic_load(&s->direct_reads);
	out->direct_writes = atomic_load(&s->direct_writes);
	out->direct_lost = atomic_load(&s->direct_lost);
	out->unregs = atomic_load(&s->unregs);
}
