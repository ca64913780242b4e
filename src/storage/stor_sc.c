/* stor_sc.c - short-circuit read mappings (stor_sc.h, docs/rpc.md
 * "Short-circuit reads").
 *
 * THE RULE. A mapping (table, slot) of chunk C of engine E is published
 * under E's metadata lock while no mutation holds C's engine lock, with
 * the slot word set to a fresh value V (an atomic increment: slot words
 * only ever grow). A client read is good when it loaded V before its
 * pread and loads V again after it. Everything that could make the
 * mapped bytes wrong starts by bumping the word:
 *   - any engine mutation of C (write in any form: copy-on-write, in-place
 *     append, journaled overwrite; remove; compaction move) takes C's
 *     engine lock first, and the lock's first grant runs our hook under
 *     E's mutex: no new mapping of C can be made while it is held, and
 *     the block the mapping names is freed (so reused) only after that
 *     mutation's commit, long after the bump;
 *   - a CRAQ chain write takes C's CRAQ lock before its local apply (our
 *     hook on the lock's grant), and a mapping is refused while that lock
 *     is held and revoked when it was granted while we mapped (grant
 *     counter before and after), so no pending version is ever mapped;
 *   - the connection ending (the client's table is no longer ours to
 *     keep), a change of routing version, a target that stopped serving:
 *     every slot concerned;
 *   - the service fenced or dead: the lease word (CLOCK_MONOTONIC ms)
 *     stops being refreshed; a client trusts a read only when the lease
 *     it loaded before the read is still ahead of the clock after the
 *     read's bytes are in (sc_direct.c read_check).
 * The bump is a sequentially consistent RMW, ordered before the
 * mutation's own stores and I/O system calls.
 *
 * A SUCCESSOR. A service killed with tables out bumps nothing more, and
 * the service restarted on its targets knows nothing of its tables. So
 * no lease is published before it is recorded in each target's
 * "sc_lease" file (lease_grant: the largest lease this process gave,
 * written before any table shows it; page cache only, a process death
 * keeps it), and a service opening a target first waits until the
 * clock has passed that record (stor_sc_wait_predecessor, before the
 * engine opens: recovery, compaction and writes all come after). Any
 * mutation of the new process therefore happens after every lease the
 * old one gave has run out, hence after every read that passed its
 * checks had its bytes: a successor can never change what such a read
 * returned. (Until 2026-12-06 clients polled the service's pidfd after
 * each read instead: one system call a read.)
 */
#include "storage/stor_sc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "common/wire.h"
#include "common/xalloc.h"
#include "storage/stor_shm.h"
#include "storage/storage_int.h"

#define SC_NB 4096
#define SC_TICK_MS 50
#define SC_LEASE_MS 250
/* Longest lease CFS_TEST_SC_LEASE_MS may ask; a record further ahead of
 * the clock than this was written in another boot (no client of it is
 * left) and is not waited for. */
#define SC_LEASE_MAX_MS 10000
#define SC_REC_NAME "sc_lease"
#define SC_GHOST 65536u

struct sc_tab;

struct sc_ent {
	struct chunk_engine *e;
	struct chunk_id id;
	struct sc_tab *tab;
	uint32_t slot;
	bool ref;          /* CLOCK's second chance: the client mapped the chunk again */
	struct stor_target *t;
	struct sc_ent *next;
};

struct sc_tab {
	struct stor_sc *x;
	uint64_t region;
	struct stor_shm_region *hold;
	_Atomic uint64_t *hdr;
	_Atomic uint64_t *seq;
	struct sc_ent *ent[STO_SC_SLOTS]; /* NULL: free */
	uint32_t fr[STO_SC_SLOTS];        /* free slots, a stack */
	uint32_t nfr;
	uint32_t hand;                    /* CLOCK: the next slot to consider */
	uint64_t ghost[SC_GHOST / 64];    /* chunks evicted since the hand last wrapped,
					     hashed (a false hit only grants a second chance) */
	struct sc_tab *next, *prev;
};

struct sc_hook {
	struct stor_sc *x;
	struct stor_target *t;
	int rec_fd; /* the target's lease record (A SUCCESSOR); -1: none, no lease given */
};

struct stor_sc {
	struct storage_service *s;
	pthread_mutex_t mu;            /* everything below; after engine / CRAQ locks */
	struct sc_ent *b[SC_NB];
	struct sc_tab *tabs;
	uint64_t routing_ver;
	struct sc_hook *hooks;         /* one per target */
	pthread_t thr;
	bool thr_started;
	pthread_cond_t cv;
	bool stop;
	_Atomic uint64_t nent;         /* entries: hooks skip the mutex at 0 */
	uint32_t nslots;               /* slots used per table (CFS_TEST_SC_SLOTS) */
	uint64_t lease_ms;             /* SC_LEASE_MS (CFS_TEST_SC_LEASE_MS) */
	uint64_t rec_max;              /* the lease recorded in every target's file */
	bool rec_warned;
	bool legacy;                   /* CFS_TEST_SC_LEGACY: no records (a service before them) */
	_Atomic uint64_t maps, revokes, ntabs, evictions;
};

static size_t bucket(const struct chunk_engine *e, struct chunk_id id)
{
	uint64_t h = id.ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)id.idx * 0xC2B2AE3D27D4EB4Full ^
		     (uint64_t)(uintptr_t)e;
	return (size_t)(h >> 40) % SC_NB;
}

/* Under mu: bumps ENT's slot word and forgets it. PP: its link. */
static void revoke_ent(struct stor_sc *x, struct sc_ent **pp)
{
	struct sc_ent *n = *pp;
	atomic_fetch_add_explicit(&n->tab->seq[n->slot], 1, memory_order_seq_cst);
	n->tab->ent[n->slot] = NULL;
	n->tab->fr[n->tab->nfr++] = n->slot;
	*pp = n->next;
	free(n);
	atomic_fetch_sub_explicit(&x->nent, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&x->revokes, 1, memory_order_relaxed);
}

/* Under mu: revokes the entries of E's chunk ID (in every table, or only
 * in TAB when not NULL). */
static void revoke_id_locked(struct stor_sc *x, struct chunk_engine *e, struct chunk_id id,
			     struct sc_tab *tab)
{
	struct sc_ent **pp = &x->b[bucket(e, id)];
	while (*pp) {
		struct sc_ent *n = *pp;
		if (n->e == e && !chunk_id_cmp(n->id, id) && (!tab || n->tab == tab))
			revoke_ent(x, pp);
		else
			pp = &n->next;
	}
}

/* Under mu: revokes every entry for which KEEP says 0 (NULL: all). */
static void revoke_where(struct stor_sc *x, bool (*keep)(struct sc_ent *n, void *arg), void *arg)
{
	for (size_t i = 0; i < SC_NB; i++) {
		struct sc_ent **pp = &x->b[i];
		while (*pp) {
			if (keep && keep(*pp, arg))
				pp = &(*pp)->next;
			else
				revoke_ent(x, pp);
		}
	}
}

static void revoke_id(struct stor_sc *x, struct chunk_engine *e, struct chunk_id id)
{
	if (!atomic_load_explicit(&x->nent, memory_order_acquire))
		return; /* nothing mapped: a publish holds E's lock, which we hold too */
	pthread_mutex_lock(&x->mu);
	revoke_id_locked(x, e, id, NULL);
	pthread_mutex_unlock(&x->mu);
}

/* Engine hook: under E's mutex, before the mutation changes anything. */
static void eng_hook(void *arg, struct chunk_engine *e, struct chunk_id id)
{
	revoke_id(arg, e, id);
}

/* CRAQ hook: under the locks' mutex, before the local apply. */
static void craq_hook(void *arg, struct chunk_id id)
{
	struct sc_hook *h = arg;
	revoke_id(h->x, h->t->eng, id);
}

void stor_sc_revoke_all(struct stor_sc *x)
{
	if (!x)
		return;
	pthread_mutex_lock(&x->mu);
	revoke_where(x, NULL, NULL);
	pthread_mutex_unlock(&x->mu);
}

static bool target_started(struct sc_ent *n, void *arg)
{
	(void)arg;
	return atomic_load(&n->t->started);
}

/* Under mu: a lease for the tables, recorded first in every target's
 * record (A SUCCESSOR); 0 (no lease: reads go over RPC) when a record
 * cannot be written. */
static uint64_t lease_grant(struct stor_sc *x)
{
	uint64_t lease = clock_mono_ms() + x->lease_ms;
	if (lease <= x->rec_max || x->legacy)
		return lease;
	for (size_t i = 0; i < x->s->nt; i++) {
		struct sc_hook *h = &x->hooks[i];
		if (h->rec_fd < 0 || pwrite(h->rec_fd, &lease, sizeof(lease), 0) != sizeof(lease)) {
			if (!x->rec_warned)
				LOG_WARN("storage", "target %s: cannot record the short-circuit lease "
						    "(%s): no short-circuit reads", h->t->dir,
					 h->rec_fd < 0 ? "not open" : strerror(errno));
			x->rec_warned = true;
			return 0;
		}
	}
	x->rec_max = lease;
	return lease;
}

bool stor_sc_test_legacy(void)
{
	const char *e = getenv("CFS_TEST_SC_LEGACY");
	return e && !strcmp(e, "1");
}

void stor_sc_wait_predecessor(const char *dir)
{
	if (stor_sc_test_legacy())
		return;
	char path[4200];
	snprintf(path, sizeof(path), "%s/" SC_REC_NAME, dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return; /* never gave a lease here */
	uint64_t rec = 0;
	ssize_t got = pread(fd, &rec, sizeof(rec), 0);
	close(fd);
	uint64_t now = clock_mono_ms();
	if (got != sizeof(rec) || rec < now || rec > now + SC_LEASE_MAX_MS)
		return;
	LOG_INFO("storage", "target %s: waiting %llu ms for the short-circuit leases of its "
			    "previous service to run out", dir, (unsigned long long)(rec + 1 - now));
	while ((now = clock_mono_ms()) <= rec)
		clock_sleep_ms(rec + 1 - now);
}

static void *ticker(void *arg)
{
	struct stor_sc *x = arg;
	struct storage_service *s = x->s;
	pthread_mutex_lock(&x->mu);
	while (!x->stop) {
		pthread_mutex_unlock(&x->mu);
		uint64_t rv = 0;
		if (s->mc) {
			struct mgmtd_routing *snap = mgmtd_client_routing(s->mc);
			rv = snap ? mgmtd_routing_version(snap) : 0;
			if (snap)
				mgmtd_routing_put(snap);
		}
		bool fenced = atomic_load(&s->stopping) || fence_witness_fenced(s);
		pthread_mutex_lock(&x->mu);
		if (rv != x->routing_ver) {
			/* A chain changed: whether a target still serves a chain is
			 * checked again at the next mapping. */
			revoke_where(x, NULL, NULL);
			x->routing_ver = rv;
		} else {
			revoke_where(x, target_started, NULL);
		}
		uint64_t lease = fenced || !x->tabs ? 0 : lease_grant(x);
		for (struct sc_tab *t = x->tabs; t; t = t->next)
			atomic_store_explicit(&t->hdr[0], lease, memory_order_release);
		struct timespec ts = clock_after_ms(CLOCK_REALTIME, SC_TICK_MS);
		if (!x->stop)
			pthread_cond_timedwait(&x->cv, &x->mu, &ts);
	}
	pthread_mutex_unlock(&x->mu);
	return NULL;
}

struct stor_sc *stor_sc_new(struct storage_service *s)
{
	struct stor_sc *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->s = s;
	x->hooks = calloc(s->nt ? s->nt : 1, sizeof(*x->hooks));
	if (!x->hooks) {
		free(x);
		return NULL;
	}
	/* Tests make the eviction path cheap to reach with a few slots. */
	const char *ns = getenv("CFS_TEST_SC_SLOTS");
	long v = ns ? strtol(ns, NULL, 10) : 0;
	x->nslots = v > 0 && v < (long)STO_SC_SLOTS ? (uint32_t)v : STO_SC_SLOTS;
	/* Tests lengthen the lease to leave a restarted service time to act
	 * inside its predecessor's (test_short_read kill9_fast). */
	const char *ls = getenv("CFS_TEST_SC_LEASE_MS");
	long lv = ls ? strtol(ls, NULL, 10) : 0;
	x->lease_ms = lv >= 4 * SC_TICK_MS && lv <= SC_LEASE_MAX_MS ? (uint64_t)lv : SC_LEASE_MS;
	x->legacy = stor_sc_test_legacy();
	pthread_mutex_init(&x->mu, NULL);
	pthread_cond_init(&x->cv, NULL);
	for (size_t i = 0; i < s->nt; i++) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/" SC_REC_NAME, s->t[i].dir);
		x->hooks[i] = (struct sc_hook){
			.x = x, .t = &s->t[i],
			.rec_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) };
		chunk_engine_set_mut_hook(s->t[i].eng, eng_hook, x);
		craq_locks_set_hook(s->t[i].locks, craq_hook, &x->hooks[i]);
	}
	return x;
}

static void tab_free(void *arg)
{
	struct sc_tab *t = arg;
	struct stor_sc *x = t->x;
	pthread_mutex_lock(&x->mu);
	/* The client keeps its mapping of the memfd: every slot it may still
	 * trust dies now, since no mutation will bump it after this. */
	for (uint32_t i = 0; i < x->nslots; i++)
		if (t->ent[i])
			revoke_id_locked(x, t->ent[i]->e, t->ent[i]->id, t);
	atomic_store_explicit(&t->hdr[0], 0, memory_order_release);
	if (t->prev)
		t->prev->next = t->next;
	else
		x->tabs = t->next;
	if (t->next)
		t->next->prev = t->prev;
	pthread_mutex_unlock(&x->mu);
	atomic_fetch_sub(&x->ntabs, 1);
	stor_shm_release(t->hold);
	free(t);
}

void stor_sc_free(struct stor_sc *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < x->s->nt; i++) {
		chunk_engine_set_mut_hook(x->s->t[i].eng, NULL, NULL);
		craq_locks_set_hook(x->s->t[i].locks, NULL, NULL);
	}
	pthread_mutex_lock(&x->mu);
	x->stop = true;
	pthread_cond_signal(&x->cv);
	bool joined = x->thr_started;
	pthread_mutex_unlock(&x->mu);
	if (joined)
		pthread_join(x->thr, NULL);
	/* Tables of connections still open belong to them (the RPC server is
	 * gone by now, so there are none). */
	pthread_mutex_lock(&x->mu);
	revoke_where(x, NULL, NULL);
	pthread_mutex_unlock(&x->mu);
	pthread_cond_destroy(&x->cv);
	pthread_mutex_destroy(&x->mu);
	/* A clean stop outlives its leases, so that even a successor that
	 * does not read the records (a binary before them: a downgrade)
	 * cannot change a block a client still trusts (at most the lease,
	 * 250 ms, and only after tables were in use). The records stay: a
	 * successor of a kill -9 still waits. */
	for (uint64_t now; !x->legacy && (now = clock_mono_ms()) <= x->rec_max;)
		clock_sleep_ms(x->rec_max + 1 - now);
	for (size_t i = 0; i < x->s->nt; i++)
		if (x->hooks[i].rec_fd >= 0)
			close(x->hooks[i].rec_fd);
	free(x->hooks);
	free(x);
}

void stor_sc_get_stats(struct stor_sc *x, struct stor_sc_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!x)
		return;
	out->maps = atomic_load(&x->maps);
	out->revokes = atomic_load(&x->revokes);
	out->tables = atomic_load(&x->ntabs);
	out->evictions = atomic_load(&x->evictions);
}

/* The table of REQ's connection, made on first use from REGION. */
static int tab_get(struct stor_sc *x, struct rpc_req *req, uint64_t region, struct sc_tab **out)
{
	struct sc_tab *t = stor_shm_conn_ext(req);
	if (t) {
		*out = t;
		return t->region == region ? 0 : -ESTALE;
	}
	uint8_t *base;
	struct stor_shm_region *hold;
	int rc = stor_shm_hold(req, region, 0, STO_SC_TABLE_BYTES, &base, &hold);
	if (rc)
		return rc;
	if ((uintptr_t)base % 8) {
		stor_shm_release(hold);
		return -EFAULT;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		stor_shm_release(hold);
		return -ENOMEM;
	}
	t->x = x;
	t->region = region;
	t->hold = hold;
	t->hdr = (_Atomic uint64_t *)base;
	t->seq = (_Atomic uint64_t *)(base + STO_SC_HDR);
	for (uint32_t i = 0; i < x->nslots; i++)
		t->fr[i] = x->nslots - 1 - i;
	t->nfr = x->nslots;
	if ((rc = stor_shm_set_conn_ext(req, t, tab_free))) {
		stor_shm_release(hold);
		free(t);
		return rc;
	}
	pthread_mutex_lock(&x->mu);
	/* The client trusts the lease alone (no pidfd poll per read) only
	 * with this word set, seen through the lease's release. */
	if (!x->legacy)
		atomic_store_explicit(&t->hdr[1], STO_SC_RECORDED, memory_order_relaxed);
	/* The first lease; the ticker renews it (the handler checked the
	 * fence just before). */
	atomic_store_explicit(&t->hdr[0], lease_grant(x), memory_order_release);
	t->next = x->tabs;
	if (x->tabs)
		x->tabs->prev = t;
	x->tabs = t;
	atomic_fetch_add(&x->ntabs, 1);
	if (!x->thr_started && !pthread_create(&x->thr, NULL, ticker, x))
		x->thr_started = true;
	if (!x->thr_started)
		rc = -EAGAIN; /* no lease without the ticker */
	pthread_mutex_unlock(&x->mu);
	*out = t;
	return rc;
}

struct pub_ctx {
	struct stor_sc *x;
	struct sc_tab *tab;
	struct stor_target *t;
	struct chunk_id id;
	uint32_t slot;
	uint64_t seq;
};

static size_t ghost_bit(const struct chunk_engine *e, struct chunk_id id)
{
	uint64_t h = id.ino * 0xD6E8FEB86659FD93ull ^ (uint64_t)id.idx * 0x9E3779B97F4A7C15ull ^
		     (uint64_t)(uintptr_t)e;
	return (size_t)(h >> 32) % SC_GHOST;
}

/* Under mu, TAB full: frees one slot by revoking a mapping, CLOCK over
 * the slots: a mapping the client made again (after an eviction since
 * the hand last wrapped, or while it still had one) gets a second
 * chance; a chunk mapped once goes first. The client holding the evicted
 * mapping sees its slot word move at its next read and maps again, so
 * an eviction costs a map RPC, never a wrong byte. */
static void evict_one(struct stor_sc *x, struct sc_tab *tab)
{
	for (uint32_t step = 0; step <= 2 * x->nslots && !tab->nfr; step++) {
		uint32_t i = tab->hand;
		tab->hand = (i + 1) % x->nslots;
		if (!tab->hand)
			memset(tab->ghost, 0, sizeof(tab->ghost));
		struct sc_ent *n = tab->ent[i];
		if (!n)
			continue;
		if (n->ref) {
			n->ref = false;
			continue;
		}
		size_t g = ghost_bit(n->e, n->id);
		tab->ghost[g / 64] |= 1ull << (g % 64);
		revoke_id_locked(x, n->e, n->id, tab);
		atomic_fetch_add_explicit(&x->evictions, 1, memory_order_relaxed);
	}
}

/* Under the engine's mutex (chunk_engine_sc_map). */
static int publish(void *arg, const struct chunk_meta *m)
{
	(void)m;
	struct pub_ctx *c = arg;
	struct stor_sc *x = c->x;
	pthread_mutex_lock(&x->mu);
	/* A client mapping again (its mapping still here, or evicted
	 * lately): the chunk is read more than once. */
	uint64_t before = atomic_load_explicit(&x->revokes, memory_order_relaxed);
	revoke_id_locked(x, c->t->eng, c->id, c->tab);
	size_t g = ghost_bit(c->t->eng, c->id);
	bool again = atomic_load_explicit(&x->revokes, memory_order_relaxed) != before ||
		     (c->tab->ghost[g / 64] >> (g % 64) & 1);
	c->tab->ghost[g / 64] &= ~(1ull << (g % 64));
	if (!c->tab->nfr)
		evict_one(x, c->tab);
	int rc = -ENOSPC;
	if (c->tab->nfr) {
		struct sc_ent *n = calloc(1, sizeof(*n));
		rc = -ENOMEM;
		if (n) {
			c->slot = c->tab->fr[--c->tab->nfr];
			c->seq = atomic_fetch_add_explicit(&c->tab->seq[c->slot], 1,
							   memory_order_seq_cst) + 1;
			*n = (struct sc_ent){ .e = c->t->eng, .id = c->id, .tab = c->tab,
					      .slot = c->slot, .t = c->t, .ref = again };
			size_t b = bucket(n->e, n->id);
			n->next = x->b[b];
			x->b[b] = n;
			c->tab->ent[c->slot] = n;
			atomic_fetch_add_explicit(&x->nent, 1, memory_order_release);
			rc = 0;
		}
	}
	pthread_mutex_unlock(&x->mu);
	return rc;
}

/* Maps E's chunk on TAB (the checks of a READ first) and appends the
 * SC_MAP response to OUT; 0 or the refusal (nothing appended). */
static int map_one(struct storage_service *s, struct stor_sc *x, struct sc_tab *tab,
		   const struct sto_sc_map_ent *e, struct buf *out)
{
	struct stor_target *t = stor_target_by_id(s, e->target);
	int err = !t ? -ENODEV : 0;
	if (!err && fence_witness_fenced(s))
		err = -CFS_EFENCED; /* again per chunk: a batch's last is mapped later */
	if (!err && s->mc)
		err = e->chain ? craq_read_check(s, e->target, e->chain) : -CFS_ECHAIN_VERSION;
	if (err)
		return err;
	struct chunk_id id = { e->ino, e->idx };
	uint64_t gen1, gen2;
	if (craq_lock_peek(t->locks, id, &gen1))
		return -CFS_ENOT_COMMITTED; /* an update pending */
	struct pub_ctx c = { .x = x, .tab = tab, .t = t, .id = id };
	struct chunk_meta meta;
	int fd = -1;
	uint64_t boff = 0;
	char path[PATH_MAX];
	err = chunk_engine_sc_map(t->eng, id, publish, &c, &meta, &fd, &boff, path, sizeof(path));
	if (err)
		return err;
	struct stat st;
	char abs[PATH_MAX];
	if (craq_lock_peek(t->locks, id, &gen2) || gen2 != gen1)
		err = -CFS_ENOT_COMMITTED; /* a chain write started meanwhile */
	else if (fd < 0 || fstat(fd, &st) || !realpath(path, abs) || strlen(abs) > STO_SC_MAX_PATH)
		err = -EIO;
	if (!err) {
		struct sto_sc_map_fix f = { .slot = c.slot, .seq = c.seq, .pid = (uint32_t)getpid(),
					    .dev = (uint64_t)st.st_dev, .inode = (uint64_t)st.st_ino,
					    .file_off = boff, .len = meta.len,
					    .commit_ver = meta.commit_ver, .npages = meta.npages };
		size_t at = out->len;
		err = sto_sc_map_resp_encode(out, &f, meta.page_crc, abs);
		if (err)
			out->len = at;
	}
	chunk_meta_fini(&meta);
	if (err) {
		/* Not answered: the slot goes (a client never holds it). */
		pthread_mutex_lock(&x->mu);
		revoke_id_locked(x, t->eng, id, tab);
		pthread_mutex_unlock(&x->mu);
		return err;
	}
	atomic_fetch_add_explicit(&x->maps, 1, memory_order_relaxed);
	return 0;
}

/* The checks every map request makes first, and REGION's table. */
static int map_pre(struct storage_service *s, struct rpc_req *req, uint64_t region,
		   struct sc_tab **tab)
{
	struct stor_sc *x = s->sc;
	if (!x)
		return -EOPNOTSUPP;
	if (fence_witness_fenced(s))
		return -CFS_EFENCED;
	return tab_get(x, req, region, tab);
}

void stor_sc_handle_map(struct storage_service *s, struct rpc_req *req)
{
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	struct sto_sc_map_req m;
	if (sto_sc_map_req_decode(p, plen, &m)) {
		LOG_WARN("storage", "sc map: malformed request: peer=%s", rpc_req_peer(req));
		rpc_reply_error(req, -CFS_EPROTO, "sc map: malformed request");
		return;
	}
	/* The target's checks come before the table's, as they always did
	 * (an unknown target is -ENODEV with or without a table). */
	struct sto_sc_map_ent e = { .target = m.target, .chain = m.chain, .ino = m.ino,
				    .idx = m.idx };
	int err = !s->sc ? -EOPNOTSUPP : !stor_target_by_id(s, m.target) ? -ENODEV : 0;
	if (!err && s->mc)
		err = m.chain ? craq_read_check(s, m.target, m.chain) : -CFS_ECHAIN_VERSION;
	struct sc_tab *tab = NULL;
	if (!err)
		err = map_pre(s, req, m.region, &tab);
	struct buf b;
	buf_init(&b);
	if (!err)
		err = map_one(s, s->sc, tab, &e, &b);
	if (err)
		rpc_reply_error(req, err, "sc map");
	else
		rpc_reply(req, 0, b.data, (uint32_t)b.len);
	buf_fini(&b);
}

void stor_sc_handle_map_many(struct storage_service *s, struct rpc_req *req)
{
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	if (plen >= 12 && wire_load_u32(p + 8) > STO_SC_MAP_MANY_MAX) {
		char why[96];
		snprintf(why, sizeof(why), "sc map many: %u entries, at most %u",
			 wire_load_u32(p + 8), STO_SC_MAP_MANY_MAX);
		rpc_reply_error(req, -E2BIG, why);
		return;
	}
	struct sto_sc_map_ent *ent = malloc(STO_SC_MAP_MANY_MAX * sizeof(*ent));
	struct sto_sc_map_many_req m;
	if (!ent) {
		rpc_reply_error(req, -ENOMEM, "sc map many");
		return;
	}
	if (sto_sc_map_many_req_decode(p, plen, &m, ent, STO_SC_MAP_MANY_MAX)) {
		LOG_WARN("storage", "sc map many: malformed request: peer=%s", rpc_req_peer(req));
		rpc_reply_error(req, -CFS_EPROTO, "sc map many: malformed request");
		free(ent);
		return;
	}
	struct sc_tab *tab = NULL;
	int err = map_pre(s, req, m.region, &tab);
	struct buf b, one;
	buf_init(&b);
	buf_init(&one);
	if (!err)
		err = sto_sc_map_many_resp_head_encode(&b, m.n);
	for (uint32_t i = 0; !err && i < m.n; i++) {
		one.len = 0;
		/* Past the answer's budget: the client maps the rest again. */
		int r = b.len >= STO_SC_MAP_MANY_BYTES ? -EMSGSIZE : map_one(s, s->sc, tab, &ent[i], &one);
		err = sto_sc_map_many_res_encode(&b, r, r ? (const void *)"" : one.data,
						 r ? 0 : (uint32_t)one.len);
		if (err && !r) {
			/* Not answered after all: its slot goes. */
			struct stor_target *t = stor_target_by_id(s, ent[i].target);
			pthread_mutex_lock(&s->sc->mu);
			revoke_id_locked(s->sc, t->eng, (struct chunk_id){ ent[i].ino, ent[i].idx },
					 tab);
			pthread_mutex_unlock(&s->sc->mu);
		}
	}
	if (err)
		rpc_reply_error(req, err, "sc map many");
	else
		rpc_reply(req, 0, b.data, (uint32_t)b.len);
	buf_fini(&one);
	buf_fini(&b);
	free(ent);
}
