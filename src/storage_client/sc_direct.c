/* sc_direct.c - short-circuit reads, the client's side (sc_direct.h; the
 * rule is in storage/stor_sc.c and docs/rpc.md "Short-circuit reads").
 *
 * PEERS. Per server address: a slot table (a sealed memfd of
 * STO_SC_TABLE_BYTES, mapped read-only here, registered with SHM_REG on
 * this path's own connection), the server's pid (a pidfd: a dead server
 * is found dead when its lease runs out), the data files opened so far (checked
 * against the device and inode the server named) and a hash of chunk
 * mappings. A mapping is immutable once published and reference counted:
 * a read takes a reference under the peer's lock (held shared only for
 * the lookup, never across I/O) and drops it when done; a new mapping of
 * the chunk replaces it under the lock held exclusively, briefly. A data
 * file is counted by the mappings on it and closed (under the peer's lock
 * held exclusively) once none is left, so no read ever uses a closed
 * descriptor (see KEYS AND FILES at key_unmap). A new registration (the
 * server found dead, or the connection replaced: -ESTALE) drops every
 * mapping of that server and starts a new table.
 *
 * TABLES are reference counted too (see TABLE LIFETIME at dtab_put): the
 * peer holds its current one, every mapping the table it was made on,
 * and a map RPC in flight the table it asked on. A read reaches a table
 * only through a mapping it holds, so an old table is unmapped (and its
 * pidfd closed) when the last read still inside it is done, and a
 * client survives any number of its servers' restarts.
 *
 * A READ. Lease word L still ahead of the monotonic clock; slot word equal
 * to the mapping's value (acquire); the whole pages holding the range
 * read from the block file (O_DIRECT: on this path's io_uring for the
 * async call, whose completion thread finishes the read and calls back,
 * so the caller's thread never waits for the disk; with pread for the
 * blocking call; CFS_SHORT_READ=cache: page cache hits only;
 * by default (CFS_SHORT_READ_CACHED=0 turns it off) the async call tries
 * the page cache on the caller's thread first, see read_cached); each page's
 * CRC32C against the mapping's; acquire fence and the slot word again;
 * the clock still before L. Only then are the bytes the caller's: the
 * server bumped no slot of ours meanwhile, and had it died, no successor
 * touches its targets' files before the clock passes L (stor_sc.c "A
 * SUCCESSOR"), so nothing but the server the slot word speaks for can
 * have changed the bytes while they were read. A CRC
 * mismatch under a slot still valid answers SC_DIRECT_CORRUPT: the caller
 * reads over RPC from the same target, whose service then finds the bad
 * page itself, reports it and repairs its copy. An async read of whole pages into a page-aligned destination
 * reads into it directly (the bytes are the caller's only after the
 * checks; a failed check leaves it to the RPC read, which overwrites it).
 * The completion thread takes its completions in batches: it hands a
 * sc_direct_read_batch's reads to their waiting caller (a batch on the
 * shared ring: most run on their thread's own ring, see own_ring), and
 * finishes the async reads (aio_batch). No system call of the rule's
 * own: until 2026-12-06 a read ended with a poll(2) of the server's
 * pidfd (once per batch on the completion thread, once per read on the
 * callers' threads); the pidfd now only tells a dead server from a
 * dropped table once a lease has run out (read_dead).
 *
 * EVICTION. A server gives a table STO_SC_SLOTS slots; with all in use, a
 * new map revokes another chunk's mapping (CLOCK, stor_sc.c), which its
 * next read here finds stale and maps again. A slot handed out again
 * names a new chunk: the mapping that held it before is dropped then, so
 * this side keeps at most one live mapping (and its CRCs) per slot, and
 * the chunk's key goes with it (KEYS AND FILES, at key_unmap).
 */
#include "storage_client/sc_direct.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/cache_probe.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/sched_hint.h"
#include "common/status.h"
#include "storage/storage_proto.h"

#define SD_MAX_PEERS 64
#define SD_ADDR_MAX 64
#define SD_NB 8192 /* hash buckets a peer: at most SD_KEYS / SD_NB keys each */
/* Keys a peer keeps at most (CFS_TEST_SC_KEYS): twice the live mappings a
 * table allows, so keys waiting to map again (a refused map's retry
 * time) or being mapped have room beside every slot's (KEYS AND FILES). */
#define SD_KEYS (2u * STO_SC_SLOTS)
#define SD_MAX_FILES 256
#define SD_MAX_TABS 64 /* tables held at once per address (old ones that reads are still in) */
#define SD_OFF_MS 10000
#define SD_RETRY_MS 200
#define SD_SMALL (8u << 10)
#define SD_POOL 256
#define SD_PAGE 4096u
/* The thread's bounce buffer: a range of SC_DIRECT_ASYNC_MAX, its first
 * and last pages partial. */
#define SD_BOUNCE (SC_DIRECT_ASYNC_MAX + SD_PAGE)
/* Memory alignment O_DIRECT reads straight into a caller's buffer need
 * (the logical block size of common devices; a device wanting more
 * fails the read with -EINVAL, which goes over RPC). */
#define SD_DMA_ALIGN 512u
/* Page CRCs computed at once by read_check (its stack). */
#define SD_CRC_BATCH 64u
#define ALIGN_UP(x) (((x) + SD_PAGE - 1) / SD_PAGE * SD_PAGE)

struct dpeer;

/* A registered slot table (freed by its last reference: dtab_put). */
struct dtab {
	_Atomic int refs;
	struct dpeer *p;     /* whose table it is (its count of tables) */
	const uint8_t *base; /* STO_SC_TABLE_BYTES, read-only */
	int memfd;
	uint64_t region;
	int pidfd;           /* the server's, set by the first mapping */
	uint32_t pid;
	struct dkey **skey;  /* STO_SC_SLOTS: the key whose mapping holds each slot */
};

/* One published mapping (immutable; freed by its last reference). */
struct dmap {
	_Atomic int refs;
	struct dtab *tab;        /* a reference on it */
	uint32_t slot;
	uint64_t seq;
	struct dfile *file;      /* counted in its users; NULL until published */
	int fd;                  /* buffered (FILE's) */
	int dfd;                 /* O_DIRECT (FILE's) */
	uint64_t file_off;
	uint32_t len;
	uint64_t commit_ver;
	uint32_t *crc;
};

enum { ME_NONE, ME_MAPPING };

/* A chunk seen through this peer: freed when it has no mapping, no map
 * RPC and no retry time ahead (key_reap), or by the clock when the peer
 * has its SD_KEYS (keys_make_room). Reached only under the peer's lock,
 * and by the map RPC that set ME_MAPPING (which keeps it). */
struct dkey {
	uint32_t target;
	uint64_t ino;
	uint32_t idx;
	_Atomic uint8_t used;      /* read since the clock hand last passed */
	struct dmap *cur;          /* under the peer's lock; NULL: none */
	_Atomic int st;            /* ME_MAPPING: one map RPC in flight */
	_Atomic uint64_t retry_ms; /* no new mapping before */
	struct dkey *next;
};

/* An open data file of a peer's server (allocated: mappings point at it). */
struct dfile {
	uint64_t dev, ino;
	int fd, dfd;
	_Atomic int users; /* mappings on it: raised under the peer's lock only */
};

enum { PS_NONE, PS_OK, PS_OFF };

struct dpeer {
	char addr[SD_ADDR_MAX];
	pthread_rwlock_t lk;      /* h, cur, tab, files; held briefly */
	pthread_mutex_t reg_mu;   /* one registration at a time */
	_Atomic int st;
	_Atomic uint64_t off_until;
	_Atomic int dead;
	_Atomic uint64_t dead_ms; /* when it was last found dead (or unreachable since) */
	_Atomic int stale;        /* the connection was replaced: a new table is needed */
	_Atomic int no_many;      /* an old server: no SC_MAP_MANY, one map RPC a chunk */
	struct dtab *tab;         /* current table (a reference on it); NULL: none */
	_Atomic int ntabs;        /* tables not freed yet: the current one and those
				     reads (or map RPCs) are still inside */
	struct dkey *h[SD_NB];
	int nkeys;                /* keys in h */
	size_t hand;              /* the clock's next bucket (keys_make_room) */
	struct dfile *files[SD_MAX_FILES];
	int nfiles;
};

struct aop;

struct sc_direct {
	struct rpc_client *rpc;
	/* Async reads (sc_direct_read_async): O_DIRECT reads on this ring,
	 * completed by aio_thr. */
	struct io_uring ring;
	bool ring_ok;
	pthread_mutex_t ring_mu;  /* submissions */
	pthread_t aio_thr;
	/* Idle SD_SMALL buffers of async reads (malloc's aligned path cost
	 * more than the CRC check). */
	pthread_mutex_t pool_mu;
	void *pool[SD_POOL];
	int npool;
	struct aop *aops;         /* idle async read records, a list; under pool_mu */
	int naops;
	pthread_mutex_t mu;       /* peers[] growth */
	struct dpeer *peers[SD_MAX_PEERS];
	_Atomic int npeers;
	pthread_key_t bounce_key;
	void (*_Atomic will_block)(void);
	int wait_disk;            /* 1: O_DIRECT reads here; 0 (CFS_SHORT_READ=cache): page
				     cache hits only */
	int cached;               /* 1 (default; 0 with CFS_SHORT_READ_CACHED=0; O_DIRECT mode only): async
				     reads try the page cache on the caller's thread first,
				     misses read buffered on the ring (read_cached) */
	int big;                  /* 0 (CFS_SHORT_READ_BIG=0): lone ranges of at most
				     SC_DIRECT_ASYNC_MAX only, batches over RPC (as
				     before 2026-12-05) */
	_Atomic uint64_t reads, fallbacks, misses, maps, map_fails, stale, corrupt, dead;
	_Atomic uint64_t regs;    /* tables registered */
	_Atomic uint64_t map_rpcs, map_many; /* SC_MAP RPCs sent; SC_MAP_MANY RPCs sent */
	int many;                 /* 1 with CFS_SC_MAP_MANY=1 (off by default: it lost at
				     64 KiB pages, docs/kvcache.md fourteenth pass): a batch
				     maps its chunks with one SC_MAP_MANY per server */
	size_t many_group;        /* CFS_SC_MAP_MANY=N (N >= 2): groups of at most N chunks,
				     each mapped when the batch's reads reach it; 0: all */
	_Atomic int64_t tables;   /* tables not freed yet, every peer's */
	_Atomic int64_t keys, files; /* keys and open data files now, every peer's */
	_Atomic uint64_t key_evictions; /* keys the clock freed (keys_make_room) */
	int keys_max;             /* keys a peer keeps at most (SD_KEYS; CFS_TEST_SC_KEYS) */
	uint64_t off_ms;          /* hold-off (SD_OFF_MS; CFS_TEST_SC_OFF_MS) */
	void (*_Atomic test_mid)(uint64_t ino, uint32_t idx); /* sc_direct_set_test_mid */
	_Atomic uint64_t cached_hits, cached_misses; /* read_cached */
	struct cache_probe probe; /* whether a small async read tries the cache (read_async_at) */
	bool probe_all;           /* CFS_SHORT_READ_PROBE=all: every one does */
};

/* CRC32C "append a page of zeros" as four byte tables (it is linear):
 * a large read's CRC is folded from its pages' at 4 lookups a page
 * instead of crc32c_combine's 32x32 bit products. */
static uint32_t shift_tbl[4][256];
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

static void shift_init(void)
{
	for (uint32_t n = 0; n < 256; n++)
		for (int k = 0; k < 4; k++)
			shift_tbl[k][n] = crc32c_combine(n << (8 * k), 0, SD_PAGE);
}

static uint32_t page_shift(uint32_t crc)
{
	return shift_tbl[0][crc & 0xff] ^ shift_tbl[1][(crc >> 8) & 0xff] ^
	       shift_tbl[2][(crc >> 16) & 0xff] ^ shift_tbl[3][crc >> 24];
}

static void bounce_free(void *p) { free(p); }
static void *aio_main(void *arg);
static void aops_free(struct sc_direct *d);

void sc_direct_set_will_block(struct sc_direct *d, void (*fn)(void))
{
	if (d)
		atomic_store(&d->will_block, fn);
}

void sc_direct_set_test_mid(struct sc_direct *d, void (*fn)(uint64_t ino, uint32_t idx))
{
	if (d)
		atomic_store(&d->test_mid, fn);
}

int sc_direct_test_bad_map(struct sc_direct *d, const char *addr)
{
	struct rpc_peer *rp;
	char err[128];
	int rc = rpc_client_peer(d->rpc, addr, &rp, err, sizeof(err));
	if (rc)
		return rc;
	uint8_t junk = 0;
	struct rpc_call cl = { .type = STO_MSG_SC_MAP, .payload = &junk, .payload_len = 1,
			       .timeout_ms = 5000 };
	struct buf resp;
	buf_init(&resp);
	rc = rpc_call(rp, &cl, &resp, NULL);
	buf_fini(&resp);
	return rc;
}

static void will_block(struct sc_direct *d)
{
	void (*fn)(void) = atomic_load_explicit(&d->will_block, memory_order_relaxed);
	if (fn)
		fn();
}

/* TABLE LIFETIME. A table's memory (its slot and lease words) tells a
 * read its bytes are good and its pidfd whether a lapsed lease means a
 * dead server, so they must outlive every read that found its mapping
 * on the table: one unmapped under a read between its halves would
 * fault, and one whose pidfd were closed (and the number reused) could
 * answer "alive" for a dead server. Those
 * reads are not counted anywhere else, which is why tables used to stay
 * until the client ended, and why after SD_MAX_TABS registrations with
 * one address a client took no short-circuit read from it again.
 *
 * The rule: whoever uses a table holds a reference on it. The peer holds
 * one on its current table (P->tab, dropped when a registration replaces
 * it); a mapping holds one on its table (dropped when the mapping is
 * freed, after its last reader); a map RPC holds one on the table it
 * asks on, from the lookup under the peer's lock until its answer is
 * taken (map_finish). A reference is only ever taken from one already
 * held (the peer's, a mapping's, the map's) or under the peer's lock
 * from P->tab, so a count that reached 0 never rises again: nothing can
 * reach that table any more, and it is unmapped and freed at once, on
 * whichever thread dropped the last reference (a reader's, the
 * completion thread, an RPC loop thread). Freeing takes no lock, so it
 * may happen under the peer's (peer_drop_maps). And since a reference is
 * held across every comparison P->tab == T, a freed table's address
 * reused by a new one is never taken for it. */
static void dtab_get(struct dtab *t)
{
	atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

static void dtab_put(struct sc_direct *d, struct dtab *t)
{
	if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
		return;
	munmap((void *)t->base, STO_SC_TABLE_BYTES);
	close(t->memfd);
	if (t->pidfd >= 0)
		close(t->pidfd);
	free(t->skey);
	atomic_fetch_sub(&t->p->ntabs, 1);
	atomic_fetch_sub(&d->tables, 1);
	free(t);
}

static void dmap_put(struct sc_direct *d, struct dmap *m)
{
	if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
		if (m->file) /* the last use of FILE here: files_reap may close it */
			atomic_fetch_sub_explicit(&m->file->users, 1, memory_order_release);
		dtab_put(d, m->tab);
		free(m->crc);
		free(m);
	}
}

static size_t hbucket(uint32_t target, uint64_t ino, uint32_t idx)
{
	uint64_t h = ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)idx * 0xC2B2AE3D27D4EB4Full ^ target;
	return (size_t)(h >> 40) % SD_NB;
}

/* KEYS AND FILES. A client used to keep a key for every chunk it ever
 * read through a server, and every data file it opened, until it ended:
 * a job reading 100 TB in 4 MiB chunks held 25 M keys (1.6 GB). Now:
 *
 * - A key is freed as soon as it has no mapping, no map RPC (ME_MAPPING)
 *   and no retry time ahead (key_reap): when its slot is handed to
 *   another chunk (map_finish), when a read finds its mapping stale
 *   (map_forget), when a registration drops every mapping
 *   (peer_drop_maps). Mapped keys are at most one a slot (the slot's,
 *   t->skey), so a peer keeps about STO_SC_SLOTS keys.
 * - At most D->keys_max a peer all the same (keys waiting out a retry
 *   time, mappings of older tables): a new key past that frees the
 *   oldest unused ones first, by a clock over the hash buckets (a key's
 *   USED bit, set by each read that finds its mapping, buys it one more
 *   turn; a mapping the server revoked buys none). A key being mapped is
 *   never freed (its map RPC holds it); with nothing to free the chunk
 *   is read over RPC.
 * - Nothing outside the peer's lock holds a key but its map RPC: a read
 *   holds its mapping (a reference), and forgets a stale one by the
 *   chunk's name (map_forget), so freeing a key (under the lock held
 *   exclusively) never frees what a read between its halves uses.
 * - T->skey[S] == K only while K's mapping is the one of slot S on T
 *   (key_unmap keeps it so), so a freed key is never found there.
 * - A data file is counted by the mappings on it (users, dropped by the
 *   mapping's last reference: dmap_put) and closed by files_reap, under
 *   the lock held exclusively, once none is left: only a new mapping
 *   raises the count, under that lock, so none can come back meanwhile.
 *   The service never deletes a data file (freed blocks are punched), but
 *   one of a removed target would otherwise stay open, its space held. */

/* Under P's exclusive lock: K loses its mapping (the slot it held is
 * free for another key; readers keep the mapping until done). */
static void key_unmap(struct sc_direct *d, struct dpeer *p, struct dkey *k)
{
	struct dmap *m = k->cur;
	if (!m)
		return;
	if (m->tab == p->tab && p->tab->skey[m->slot] == k)
		p->tab->skey[m->slot] = NULL;
	k->cur = NULL;
	dmap_put(d, m);
}

/* Under P's exclusive lock: unlinks and frees K (unmapped, with no map
 * RPC), PREV the link to it (NULL: found in its bucket). */
static void key_free(struct sc_direct *d, struct dpeer *p, struct dkey *k, struct dkey **prev)
{
	if (!prev)
		for (prev = &p->h[hbucket(k->target, k->ino, k->idx)]; *prev != k;
		     prev = &(*prev)->next)
			;
	*prev = k->next;
	p->nkeys--;
	atomic_fetch_sub(&d->keys, 1);
	free(k);
}

/* Under P's exclusive lock: frees K unless something still needs it (a
 * mapping, a map RPC, a retry time ahead of NOW). */
static bool key_reap(struct sc_direct *d, struct dpeer *p, struct dkey *k, uint64_t now)
{
	if (k->cur || atomic_load(&k->st) == ME_MAPPING || now < atomic_load(&k->retry_ms))
		return false;
	key_free(d, p, k, NULL);
	return true;
}

/* Whether mapping M no longer holds: its table replaced or its slot
 * handed on (a read of it would go over RPC anyway). */
static bool map_revoked(const struct dpeer *p, const struct dmap *m)
{
	const _Atomic uint64_t *slot =
		(const _Atomic uint64_t *)(m->tab->base + STO_SC_HDR + 8ull * m->slot);
	return m->tab != p->tab || atomic_load_explicit(slot, memory_order_relaxed) != m->seq;
}

/* Under P's exclusive lock: room for a new key (fewer than keys_max), by
 * the clock over the buckets: keys read since its last turn (USED) are
 * passed once, keys being mapped always. False: none could be freed in
 * two turns (every key being mapped). */
static bool keys_make_room(struct sc_direct *d, struct dpeer *p)
{
	for (size_t n = 0; p->nkeys >= d->keys_max && n < 2 * SD_NB; n++) {
		struct dkey **prev = &p->h[p->hand], *k;
		p->hand = (p->hand + 1) % SD_NB;
		while ((k = *prev) && p->nkeys >= d->keys_max) {
			if (atomic_load(&k->st) == ME_MAPPING ||
			    (atomic_exchange_explicit(&k->used, 0, memory_order_relaxed) &&
			     !(k->cur && map_revoked(p, k->cur)))) {
				prev = &k->next;
				continue;
			}
			key_unmap(d, p, k);
			key_free(d, p, k, prev);
			atomic_fetch_add(&d->key_evictions, 1);
		}
	}
	return p->nkeys < d->keys_max;
}

/* Under P's exclusive lock: closes the data files no mapping uses. */
static void files_reap(struct sc_direct *d, struct dpeer *p)
{
	for (int i = 0; i < p->nfiles;) {
		struct dfile *f = p->files[i];
		if (atomic_load_explicit(&f->users, memory_order_acquire)) {
			i++;
			continue;
		}
		close(f->fd);
		close(f->dfd);
		free(f);
		p->files[i] = p->files[--p->nfiles];
		atomic_fetch_sub(&d->files, 1);
	}
}

struct sc_direct *sc_direct_new(const struct rpc_opts *ro, int dflt)
{
	const char *on = getenv("CFS_SHORT_READ"), *e1 = getenv("CFS_NO_SHM"),
		   *e2 = getenv("CFS_NO_LOCAL_SOCKET");
	if (!on)
		on = dflt ? "1" : "0";
	if ((strcmp(on, "1") && strcmp(on, "cache")) || (e1 && !strcmp(e1, "1")) ||
	    (e2 && !strcmp(e2, "1")) || ro->no_local_socket)
		return NULL;
	struct sc_direct *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->wait_disk = strcmp(on, "cache") != 0;
	const char *big = getenv("CFS_SHORT_READ_BIG");
	d->big = !big || strcmp(big, "0") != 0;
	const char *cached = getenv("CFS_SHORT_READ_CACHED");
	d->cached = d->wait_disk && !(cached && !strcmp(cached, "0"));
	const char *many = getenv("CFS_SC_MAP_MANY");
	long mg = many ? strtol(many, NULL, 10) : 0;
	d->many = mg >= 1;
	d->many_group = mg >= 2 ? (size_t)mg : 0;
	const char *probe = getenv("CFS_SHORT_READ_PROBE");
	d->probe_all = probe && !strcmp(probe, "all");
	const char *off = getenv("CFS_TEST_SC_OFF_MS"); /* test hook; 0: SD_OFF_MS */
	d->off_ms = off && strtoull(off, NULL, 10) ? strtoull(off, NULL, 10) : SD_OFF_MS;
	const char *keys = getenv("CFS_TEST_SC_KEYS"); /* test hook; 0: SD_KEYS */
	long kv = keys ? strtol(keys, NULL, 10) : 0;
	d->keys_max = kv > 0 && kv < (long)SD_KEYS ? (int)kv : (int)SD_KEYS;
	const char *win = getenv("CFS_SHORT_READ_PROBE_WINDOW"); /* test hook */
	cache_probe_init(&d->probe, win ? (uint32_t)strtoul(win, NULL, 10) : 0, CACHE_PROBE_RISE);
	pthread_once(&shift_once, shift_init);
	pthread_mutex_init(&d->mu, NULL);
	if (pthread_key_create(&d->bounce_key, bounce_free)) {
		free(d);
		return NULL;
	}
	struct rpc_opts o = *ro;
	o.conns_per_peer = 1; /* the table lives on one connection */
	if (rpc_client_new(&o, &d->rpc)) {
		pthread_key_delete(d->bounce_key);
		free(d);
		return NULL;
	}
	pthread_mutex_init(&d->ring_mu, NULL);
	pthread_mutex_init(&d->pool_mu, NULL);
	if (d->wait_disk && !io_uring_queue_init(256, &d->ring, 0)) {
		d->ring_ok = true;
		if (pthread_create(&d->aio_thr, NULL, aio_main, d)) {
			io_uring_queue_exit(&d->ring);
			d->ring_ok = false;
		}
	}
	return d;
}

/* Under P's exclusive lock: drops every mapping (their readers keep them,
 * and their tables, until done), the keys left with nothing and the
 * files no mapping uses now. */
static void peer_drop_maps(struct sc_direct *d, struct dpeer *p)
{
	uint64_t now = clock_mono_ms();
	for (size_t i = 0; i < SD_NB; i++)
		for (struct dkey *k = p->h[i], *n; k; k = n) {
			n = k->next;
			key_unmap(d, p, k);
			key_reap(d, p, k, now);
		}
	files_reap(d, p);
}

void sc_direct_free(struct sc_direct *d)
{
	if (!d)
		return;
	/* What the path did over this client's life (the mount's log at
	 * unmount): mappings per read and fallbacks are what its cost turns on. */
	if (atomic_load(&d->reads) || atomic_load(&d->fallbacks))
		LOG_NOTICE("sc_direct",
			   "stats: reads=%llu fallbacks=%llu misses=%llu maps=%llu map_fails=%llu "
			   "map_rpcs=%llu map_many=%llu "
			   "stale=%llu corrupt=%llu dead=%llu regs=%llu cached_hits=%llu "
			   "cached_misses=%llu cached_direct=%llu keys=%lld key_evictions=%llu",
			   (unsigned long long)atomic_load(&d->reads),
			   (unsigned long long)atomic_load(&d->fallbacks),
			   (unsigned long long)atomic_load(&d->misses),
			   (unsigned long long)atomic_load(&d->maps),
			   (unsigned long long)atomic_load(&d->map_fails),
			   (unsigned long long)atomic_load(&d->map_rpcs),
			   (unsigned long long)atomic_load(&d->map_many),
			   (unsigned long long)atomic_load(&d->stale),
			   (unsigned long long)atomic_load(&d->corrupt),
			   (unsigned long long)atomic_load(&d->dead),
			   (unsigned long long)atomic_load(&d->regs),
			   (unsigned long long)atomic_load(&d->cached_hits),
			   (unsigned long long)atomic_load(&d->cached_misses),
			   (unsigned long long)atomic_load(&d->probe.direct),
			   (long long)atomic_load(&d->keys),
			   (unsigned long long)atomic_load(&d->key_evictions));
	if (d->ring_ok) {
		/* A NOP with no op stops the completion thread (no read may
		 * be in flight: the caller's contract). */
		pthread_mutex_lock(&d->ring_mu);
		struct io_uring_sqe *sqe = io_uring_get_sqe(&d->ring);
		while (!sqe) {
			io_uring_submit(&d->ring);
			sqe = io_uring_get_sqe(&d->ring);
		}
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data(sqe, NULL);
		io_uring_submit(&d->ring);
		pthread_mutex_unlock(&d->ring_mu);
		pthread_join(d->aio_thr, NULL);
		io_uring_queue_exit(&d->ring);
	}
	pthread_mutex_destroy(&d->ring_mu);
	for (int i = 0; i < d->npool; i++)
		free(d->pool[i]);
	aops_free(d);
	pthread_mutex_destroy(&d->pool_mu);
	rpc_client_free(d->rpc);
	for (int i = 0; i < d->npeers; i++) {
		struct dpeer *p = d->peers[i];
		peer_drop_maps(d, p);
		/* With no read in progress (the contract) and the map RPCs
		 * completed (rpc_client_free), the current table was the last. */
		dtab_put(d, p->tab);
		p->tab = NULL;
		if (atomic_load(&p->ntabs))
			LOG_WARN("sc_direct", "%s: %d tables still referenced at the end", p->addr,
				 atomic_load(&p->ntabs));
		for (size_t b = 0; b < SD_NB; b++)
			for (struct dkey *k = p->h[b], *n; k; k = n) {
				n = k->next;
				free(k);
			}
		for (int f = 0; f < p->nfiles; f++) {
			close(p->files[f]->fd);
			close(p->files[f]->dfd);
			free(p->files[f]);
		}
		pthread_rwlock_destroy(&p->lk);
		pthread_mutex_destroy(&p->reg_mu);
		free(p);
	}
	free(pthread_getspecific(d->bounce_key));
	pthread_setspecific(d->bounce_key, NULL);
	pthread_key_delete(d->bounce_key);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

void sc_direct_get_stats(struct sc_direct *d, struct sc_direct_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!d)
		return;
	out->reads = atomic_load(&d->reads);
	out->fallbacks = atomic_load(&d->fallbacks);
	out->misses = atomic_load(&d->misses);
	out->maps = atomic_load(&d->maps);
	out->map_fails = atomic_load(&d->map_fails);
	out->map_rpcs = atomic_load(&d->map_rpcs);
	out->map_many = atomic_load(&d->map_many);
	out->stale = atomic_load(&d->stale);
	out->corrupt = atomic_load(&d->corrupt);
	out->dead = atomic_load(&d->dead);
	out->regs = atomic_load(&d->regs);
	out->tables = (uint64_t)atomic_load(&d->tables);
	out->keys = (uint64_t)atomic_load(&d->keys);
	out->key_evictions = atomic_load(&d->key_evictions);
	out->files = (uint64_t)atomic_load(&d->files);
	out->cached_hits = atomic_load(&d->cached_hits);
	out->cached_misses = atomic_load(&d->cached_misses);
	out->cached_direct = atomic_load(&d->probe.direct);
}

static struct dpeer *peer_get(struct sc_direct *d, const char *addr)
{
	int n = atomic_load_explicit(&d->npeers, memory_order_acquire);
	for (int i = 0; i < n; i++)
		if (!strcmp(d->peers[i]->addr, addr))
			return d->peers[i];
	if (strlen(addr) >= SD_ADDR_MAX)
		return NULL;
	pthread_mutex_lock(&d->mu);
	struct dpeer *p = NULL;
	n = d->npeers;
	for (int i = 0; i < n && !p; i++)
		if (!strcmp(d->peers[i]->addr, addr))
			p = d->peers[i];
	if (!p && n < SD_MAX_PEERS && (p = calloc(1, sizeof(*p)))) {
		strcpy(p->addr, addr);
		pthread_rwlock_init(&p->lk, NULL);
		pthread_mutex_init(&p->reg_mu, NULL);
		d->peers[n] = p;
		atomic_store_explicit(&d->npeers, n + 1, memory_order_release);
	}
	pthread_mutex_unlock(&d->mu);
	return p;
}

bool sc_direct_caches(struct sc_direct *d)
{
	return d && d->cached;
}

bool sc_direct_usable(struct sc_direct *d, const char *addr)
{
	if (!d)
		return false;
	struct dpeer *p = peer_get(d, addr);
	if (!p)
		return false;
	/* A server found dead is left alone a while: registering again waits
	 * for a connection to it (its backoff), which the caller then would.
	 * (The clock is read only then: this runs on every read.) */
	if (atomic_load(&p->dead) && clock_mono_ms() < atomic_load(&p->dead_ms) + d->off_ms)
		return false;
	return atomic_load(&p->st) != PS_OFF || clock_mono_ms() >= atomic_load(&p->off_until);
}

/* P takes no direct reads for a while: long when it cannot (another
 * host, an old server), briefly when it is down or restarting. */
static void peer_off_for(struct dpeer *p, uint64_t ms)
{
	atomic_store(&p->off_until, clock_mono_ms() + ms);
	atomic_store(&p->st, PS_OFF);
}

static void peer_off(struct sc_direct *d, struct dpeer *p) { peer_off_for(p, d->off_ms); }

/* Registers a new table with P's server (reg_mu held, P's lock not).
 * 0, or <0 with P off for a while (-EBADF over TCP: another host). */
static int peer_register(struct sc_direct *d, struct dpeer *p)
{
	/* Old tables go when the reads inside them are done (dtab_put): so
	 * many still held means reads stuck (a hung disk); wait for them
	 * rather than add more. */
	if (atomic_load(&p->ntabs) >= SD_MAX_TABS) {
		peer_off(d, p);
		return -ENOSPC;
	}
	int fd = memfd_create("chainfs-sc", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *tab = MAP_FAILED;
	int rc = fd < 0 ? -errno : 0;
	if (!rc && (ftruncate(fd, (off_t)STO_SC_TABLE_BYTES) < 0 ||
		    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0))
		rc = -errno;
	if (!rc && (tab = mmap(NULL, STO_SC_TABLE_BYTES, PROT_READ, MAP_SHARED, fd, 0)) == MAP_FAILED)
		rc = -errno;
	struct rpc_peer *rp = NULL;
	char err[128];
	if (!rc)
		rc = rpc_client_peer(d->rpc, p->addr, &rp, err, sizeof(err));
	struct buf b, resp;
	buf_init(&b);
	buf_init(&resp);
	struct sto_shm_reg_req m = { .size = STO_SC_TABLE_BYTES };
	if (!rc)
		rc = sto_shm_reg_req_encode(&b, &m);
	if (!rc) {
		struct rpc_call cl = { .type = STO_MSG_SHM_REG, .payload = b.data,
				       .payload_len = (uint32_t)b.len, .flags = RPC_CALL_SEND_FD,
				       .send_fd = fd, .timeout_ms = 5000 };
		rc = rpc_call(rp, &cl, &resp, NULL);
	}
	struct sto_shm_reg_resp r;
	if (!rc && sto_shm_reg_resp_decode(resp.data, resp.len, &r))
		rc = -CFS_EPROTO;
	buf_fini(&b);
	buf_fini(&resp);
	struct dtab *t = rc ? NULL : calloc(1, sizeof(*t));
	struct dkey **skey = t ? calloc(STO_SC_SLOTS, sizeof(*skey)) : NULL;
	if (!skey) {
		free(t);
		t = NULL;
	}
	if (!t) {
		if (tab != MAP_FAILED)
			munmap(tab, STO_SC_TABLE_BYTES);
		if (fd >= 0)
			close(fd);
		bool cannot = rc == -EBADF || rc == -CFS_EBADMSG_TYPE || rc == -EOPNOTSUPP ||
			      rc == -EINVAL || rc == -CFS_EPROTO;
		peer_off_for(p, cannot ? d->off_ms : SD_RETRY_MS);
		if (atomic_load(&p->dead))
			atomic_store(&p->dead_ms, clock_mono_ms()); /* still gone */
		return rc ? rc : -ENOMEM;
	}
	*t = (struct dtab){ .refs = 1, .p = p, .base = tab, .memfd = fd, .region = r.region,
			    .pidfd = -1, .skey = skey };
	atomic_fetch_add(&p->ntabs, 1);
	atomic_fetch_add(&d->tables, 1);
	atomic_fetch_add(&d->regs, 1);
	pthread_rwlock_wrlock(&p->lk);
	peer_drop_maps(d, p);
	struct dtab *old = p->tab;
	p->tab = t;
	/* Set with the swap, under the lock: read_dead and map_finish mark
	 * the peer (dead, stale, PS_NONE) under it only while the table they
	 * judged is P->tab, so neither a verdict on the old table lands on
	 * the new one nor one on the new table is overwritten here. */
	atomic_store(&p->stale, 0);
	atomic_store(&p->dead, 0);
	atomic_store(&p->st, PS_OK);
	pthread_rwlock_unlock(&p->lk);
	dtab_put(d, old); /* freed now unless a read or a map RPC is still inside */
	return 0;
}

/* Under P's lock (either mode). */
static struct dkey *key_find(struct dpeer *p, uint32_t target, uint64_t ino, uint32_t idx)
{
	for (struct dkey *k = p->h[hbucket(target, ino, idx)]; k; k = k->next)
		if (k->ino == ino && k->idx == idx && k->target == target)
			return k;
	return NULL;
}

/* Under P's exclusive lock: the key of (TARGET, INO, IDX), made when
 * there is none (an unused one freed first when P has its keys_max);
 * NULL: out of memory, or no key could be freed. */
static struct dkey *key_get_locked(struct sc_direct *d, struct dpeer *p, uint32_t target,
				   uint64_t ino, uint32_t idx)
{
	struct dkey *k = key_find(p, target, ino, idx);
	if (!k && keys_make_room(d, p) && (k = calloc(1, sizeof(*k)))) {
		k->target = target;
		k->ino = ino;
		k->idx = idx;
		size_t h = hbucket(target, ino, idx);
		k->next = p->h[h];
		p->h[h] = k;
		p->nkeys++;
		atomic_fetch_add(&d->keys, 1);
	}
	return k;
}

/* Under P's exclusive lock: the file (DEV, INO) at PATH, opened when it
 * is not yet (the files no mapping uses closed first), with a user more;
 * NULL: -EMFILE (SD_MAX_FILES in use) or -EACCES (not openable here, or
 * not the file the server named) in *RC. */
static struct dfile *file_get(struct sc_direct *d, struct dpeer *p, const char *path,
			      uint64_t dev, uint64_t ino, int *rc)
{
	struct dfile *f = NULL;
	for (int i = 0; i < p->nfiles && !f; i++)
		if (p->files[i]->dev == dev && p->files[i]->ino == ino)
			f = p->files[i];
	if (f) {
		atomic_fetch_add_explicit(&f->users, 1, memory_order_relaxed);
		return f;
	}
	files_reap(d, p);
	if (p->nfiles == SD_MAX_FILES) {
		*rc = -EMFILE;
		return NULL;
	}
	*rc = -EACCES;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) || (uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino) {
		close(fd);
		return NULL;
	}
	int dd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
	if (dd < 0 || fstat(dd, &st) || (uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino ||
	    !(f = malloc(sizeof(*f)))) {
		if (dd >= 0)
			close(dd);
		close(fd);
		return NULL;
	}
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	*f = (struct dfile){ .dev = dev, .ino = ino, .fd = fd, .dfd = dd, .users = 1 };
	p->files[p->nfiles++] = f;
	atomic_fetch_add(&d->files, 1);
	*rc = 0;
	return f;
}

/* The map request for key K on table T into B. */
static int map_req(struct buf *b, const struct dkey *k, uint32_t chain, const struct dtab *t)
{
	struct sto_sc_map_req q = { .region = t->region, .target = k->target, .chain = chain,
				    .ino = k->ino, .idx = k->idx };
	return sto_sc_map_req_encode(b, &q);
}

/* The answer to K's map request on table T (RC: the call's status, then
 * its payload): publishes the mapping, or leaves K without one and a
 * retry time; K leaves ME_MAPPING. Drops the map's reference on T. Any
 * thread (an RPC loop thread for a background map): it opens a data file
 * at most, never waits on a peer. */
static void map_finish(struct sc_direct *d, struct dpeer *p, struct dkey *k, struct dtab *t,
		       int rc, const uint8_t *payload, uint32_t len)
{
	struct sto_sc_map_resp r;
	if (!rc && sto_sc_map_resp_decode(payload, len, &r))
		rc = -CFS_EPROTO;
	struct dmap *m = NULL;
	char path[STO_SC_MAX_PATH + 1];
	if (!rc && r.f.slot >= STO_SC_SLOTS)
		rc = -CFS_EPROTO;
	if (!rc && (m = calloc(1, sizeof(*m)))) {
		atomic_init(&m->refs, 1);
		m->tab = t; /* T outlives this call: the map's reference */
		dtab_get(t);
	}
	if (!rc && (!m ||
		    !(m->crc = malloc((size_t)(r.f.npages ? r.f.npages : 1) * sizeof(uint32_t)))))
		rc = -ENOMEM;
	if (!rc) {
		for (uint32_t i = 0; i < r.f.npages; i++)
			m->crc[i] = wire_load_u32(r.crcs + 4 * i);
		memcpy(path, r.path, r.path_len);
		path[r.path_len] = 0;
		m->slot = r.f.slot;
		m->seq = r.f.seq;
		m->file_off = r.f.file_off;
		m->len = r.f.len;
		m->commit_ver = r.f.commit_ver;
	}
	pthread_rwlock_wrlock(&p->lk);
	if (!rc && p->tab != t)
		rc = -ESTALE; /* registered again meanwhile: the slot is of the old table */
	if (!rc && t->pidfd < 0) {
		int pfd = (int)syscall(SYS_pidfd_open, (pid_t)r.f.pid, 0);
		if (pfd < 0) {
			rc = -ESRCH;
		} else {
			t->pidfd = pfd;
			t->pid = r.f.pid;
		}
	}
	if (!rc && t->pid != r.f.pid)
		rc = -ESRCH;
	if (!rc && (m->file = file_get(d, p, path, r.f.dev, r.f.inode, &rc))) {
		m->fd = m->file->fd;
		m->dfd = m->file->dfd;
	}
	uint64_t now = clock_mono_ms();
	if (!rc) {
		/* The slot's previous chunk was evicted (or revoked): drop
		 * its mapping now rather than at its next read, and its key
		 * with it unless something still needs that. */
		struct dkey *o = t->skey[r.f.slot];
		bool older = false; /* answers of concurrent maps may come in any order */
		if (o && o != k && o->cur && o->cur->tab == t && o->cur->slot == r.f.slot) {
			older = o->cur->seq > r.f.seq; /* slot words only grow */
			if (!older) {
				key_unmap(d, p, o);
				key_reap(d, p, o, now);
			}
		}
		key_unmap(d, p, k); /* its slot too, if another than this one */
		if (!older)
			t->skey[r.f.slot] = k;
		k->cur = m;
		m = NULL;
		atomic_fetch_add(&d->maps, 1);
	} else {
		atomic_fetch_add(&d->map_fails, 1);
		/* Busy chunks (pending or in-flight updates) are tried again
		 * soon; a full table or an odd refusal much later. */
		uint64_t wait = rc == -CFS_ENOT_COMMITTED || rc == -EBUSY ? 20
				: rc == -ENOENT ? 100 : 1000;
		atomic_store(&k->retry_ms, now + wait);
		if (rc == -ESTALE && p->tab == t) { /* the connection was replaced */
			atomic_store(&p->stale, 1);
			atomic_store(&p->st, PS_NONE);
		}
	}
	/* Refused (by the server, or here): P off for a while, under the
	 * lock and only for its current table, so that a registration of a
	 * new table meanwhile is not put off for what the old one got. */
	if ((rc == -CFS_EBADMSG_TYPE || rc == -EOPNOTSUPP || rc == -ESRCH || rc == -EACCES ||
	     rc == -CFS_EPROTO) && p->tab == t)
		peer_off(d, p);
	/* Under the lock: from here K is no longer this map's (key_reap). */
	atomic_store(&k->st, ME_NONE);
	pthread_rwlock_unlock(&p->lk);
	dmap_put(d, m);
	dtab_put(d, t);
}

/* Asks P's server for a mapping of key K (ME_MAPPING, set by the caller)
 * on table T (a reference the caller passes on) and waits for it;
 * publishes it, or leaves K without one and a retry time. */
static void map_chunk(struct sc_direct *d, struct dpeer *p, struct dkey *k, uint32_t chain,
		      struct dtab *t)
{
	struct rpc_peer *rp;
	char err[128];
	struct buf b, resp;
	buf_init(&b);
	buf_init(&resp);
	int rc = rpc_client_peer(d->rpc, p->addr, &rp, err, sizeof(err));
	if (!rc)
		rc = map_req(&b, k, chain, t);
	if (!rc) {
		struct rpc_call cl = { .type = STO_MSG_SC_MAP, .payload = b.data,
				       .payload_len = (uint32_t)b.len, .timeout_ms = 5000 };
		atomic_fetch_add(&d->map_rpcs, 1);
		rc = rpc_call(rp, &cl, &resp, NULL);
	}
	map_finish(d, p, k, t, rc, resp.data, (uint32_t)resp.len);
	buf_fini(&b);
	buf_fini(&resp);
}

/* A background map in flight (map_chunk_bg). */
struct bgmap {
	struct sc_direct *d;
	struct dpeer *p;
	struct dkey *k;
	struct dtab *t; /* the map's reference */
};

static void bgmap_done(void *arg, const struct rpc_result *res)
{
	struct bgmap *g = arg;
	map_finish(g->d, g->p, g->k, g->t, res->status, res->payload, res->payload_len);
	free(g);
}

/* map_chunk without waiting: the answer is published on an RPC loop
 * thread (sc_direct_free's rpc_client_free completes one still in flight,
 * before the peers go). */
static void map_chunk_bg(struct sc_direct *d, struct dpeer *p, struct dkey *k, uint32_t chain,
			 struct dtab *t)
{
	struct rpc_peer *rp;
	char err[128];
	struct buf b;
	buf_init(&b);
	struct bgmap *g = malloc(sizeof(*g));
	int rc = g ? rpc_client_peer(d->rpc, p->addr, &rp, err, sizeof(err)) : -ENOMEM;
	if (!rc)
		rc = map_req(&b, k, chain, t);
	if (!rc) {
		*g = (struct bgmap){ .d = d, .p = p, .k = k, .t = t };
		struct rpc_call cl = { .type = STO_MSG_SC_MAP, .payload = b.data,
				       .payload_len = (uint32_t)b.len, .timeout_ms = 5000,
				       .done = bgmap_done, .arg = g };
		atomic_fetch_add(&d->map_rpcs, 1);
		rc = rpc_call_async(rp, &cl);
	}
	buf_fini(&b);
	if (rc) {
		free(g);
		map_finish(d, p, k, t, rc, NULL, 0);
	}
}

static uint8_t *bounce_get(struct sc_direct *d)
{
	uint8_t *b = pthread_getspecific(d->bounce_key);
	if (!b) {
		b = aligned_alloc(SD_PAGE, SD_BOUNCE);
		if (b && pthread_setspecific(d->bounce_key, b)) {
			free(b);
			b = NULL;
		}
	}
	return b;
}

static bool server_dead(const struct dtab *t)
{
	struct pollfd pf = { .fd = t->pidfd, .events = POLLIN };
	return t->pidfd < 0 || poll(&pf, 1, 0) != 0;
}

/* One read between its halves. */
struct rd {
	uint64_t s1;           /* the slot word before the I/O */
	uint64_t lease;        /* the lease word before it (ms): the clock must stay below */
	bool poll;             /* the server records no leases (before 2026-12-06): poll its pidfd */
	uint32_t n;            /* bytes for the caller */
	uint32_t start, blen;  /* the whole pages read: chunk offset, bytes */
	uint8_t *buf;          /* where they land */
	uint8_t *own;          /* BUF when allocated for this read (freed by the caller) */
};

enum { BUF_TLS, BUF_OWN }; /* where read_pre may bounce: the thread's buffer, or its own */

/* Where X's pages land when the caller named no buffer: R->dst when they
 * are exactly R's bytes and the O_DIRECT read may go there, else a
 * bounce buffer (the thread's when MODE allows and it fits). */
static uint8_t *pick_buf(struct sc_direct *d, const struct storage_read *r, struct rd *x,
			 int mode)
{
	bool exact = x->start == r->off && x->blen == x->n;
	if (exact && (!d->wait_disk ||
		      (x->blen % SD_PAGE == 0 && (uintptr_t)r->dst % SD_DMA_ALIGN == 0)))
		return r->dst;
	if (mode == BUF_TLS && ALIGN_UP(x->blen) <= SD_BOUNCE)
		return bounce_get(d);
	return x->own = aligned_alloc(SD_PAGE, ALIGN_UP(x->blen));
}

static bool read_dead(struct sc_direct *d, struct dpeer *p, const struct dmap *m);

/* First half, holding a reference on M of P: 1 read BLEN bytes at START
 * into X->buf (set when BUF is NULL: see pick_buf); 0 not this way
 * (*STALE: the slot moved on). */
static int read_pre(struct sc_direct *d, struct dpeer *p, const struct dmap *m,
		    struct storage_read *r, struct rd *x, uint8_t *buf, int mode, bool *stale)
{
	x->own = NULL;
	const _Atomic uint64_t *hdr = (const _Atomic uint64_t *)m->tab->base;
	const _Atomic uint64_t *slot =
		(const _Atomic uint64_t *)(m->tab->base + STO_SC_HDR + 8ull * m->slot);
	x->lease = atomic_load_explicit(&hdr[0], memory_order_acquire);
	x->poll = atomic_load_explicit(&hdr[1], memory_order_relaxed) != STO_SC_RECORDED;
	if (clock_mono_ms() >= x->lease) {
		atomic_fetch_add(&d->stale, 1);
		/* No lease: the server is fenced, stalled or gone. Gone
		 * (killed while no read was between its halves), nothing else
		 * tells: marked dead here, the peer registers again once its
		 * address serves; else every read found this table's lease
		 * run out and went over RPC for good (test_kill9_idle).
		 * Alive, with the slot moved on too: the service dropped the
		 * table (its connection ended: tab_free in stor_sc.c zeroes
		 * the lease and bumps every slot). The mapping is forgotten
		 * (*STALE), so a map follows, answered -ESTALE on the new
		 * connection: a new table. Kept, every read of a chunk mapped
		 * before went over RPC until some other chunk needed a map. */
		if (!read_dead(d, p, m) &&
		    atomic_load_explicit(slot, memory_order_acquire) != m->seq)
			*stale = true;
		return 0;
	}
	x->s1 = atomic_load_explicit(slot, memory_order_acquire);
	if (x->s1 != m->seq) {
		*stale = true;
		atomic_fetch_add(&d->stale, 1);
		return 0;
	}
	x->n = x->start = x->blen = 0;
	x->buf = buf;
	if (r->off < m->len) {
		x->n = m->len - r->off < r->len ? m->len - r->off : r->len;
		x->start = r->off / SD_PAGE * SD_PAGE;
		uint64_t end = ALIGN_UP((uint64_t)r->off + x->n);
		x->blen = (uint32_t)((end < m->len ? end : m->len) - x->start);
		if (!x->buf)
			x->buf = pick_buf(d, r, x, mode);
		if (!x->buf)
			return 0;
	}
	return 1;
}

/* Whether X's lease still holds, after its bytes were read: then no
 * successor of the server has touched the block files yet (stor_sc.c "A
 * SUCCESSOR"). The clock is read after the I/O completed (the syscall's
 * return or the completion's load), and the vDSO's read of it is
 * ordered. */
static bool lease_held(const struct rd *x) { return clock_mono_ms() < x->lease; }

/* Second half, part one, the I/O done with RES (bytes or -errno): the
 * pages' CRCs, the slot word again and the lease. 1 the bytes are good
 * (read_done), 0 not (read over RPC), SC_DIRECT_CORRUPT a page failed its
 * CRC while the slot and the lease held (the block's own bytes). */
static int read_check(struct sc_direct *d, const struct dmap *m, const struct rd *x, ssize_t res)
{
	const _Atomic uint64_t *slot =
		(const _Atomic uint64_t *)(m->tab->base + STO_SC_HDR + 8ull * m->slot);
	if (x->blen) {
		if (res < (ssize_t)x->blen) {
			atomic_fetch_add(&d->misses, 1);
			return 0;
		}
		/* The pages' CRCs a batch at a time (crc32c_pages: several
		 * pages at once, a third of a 1 MiB read-ahead's CPU here). */
		uint32_t got[SD_CRC_BATCH];
		for (uint32_t pg = x->start / SD_PAGE, o = 0; o < x->blen; pg++, o += SD_PAGE) {
			uint32_t i = (o / SD_PAGE) % SD_CRC_BATCH;
			if (!i) {
				uint32_t left = x->blen - o;
				crc32c_pages(x->buf + o,
					     left < SD_CRC_BATCH * SD_PAGE ? left : SD_CRC_BATCH * SD_PAGE,
					     SD_PAGE, got);
			}
			if (got[i] != m->crc[pg]) {
				/* A stale cached page is read from the disk next time;
				 * a bad disk page is its service's to report. */
				(void)posix_fadvise(m->fd, (off_t)(m->file_off + x->start), x->blen,
						    POSIX_FADV_DONTNEED);
				atomic_thread_fence(memory_order_acquire);
				if (atomic_load_explicit(slot, memory_order_relaxed) != x->s1 ||
				    !lease_held(x)) {
					/* changed under us, or perhaps by a successor */
					atomic_fetch_add(&d->stale, 1);
					return 0;
				}
				atomic_fetch_add(&d->corrupt, 1);
				return SC_DIRECT_CORRUPT;
			}
		}
	}
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(slot, memory_order_relaxed) != x->s1 || !lease_held(x)) {
		atomic_fetch_add(&d->stale, 1);
		return 0;
	}
	/* A server that records no leases (older than the rule) gives no
	 * successor a reason to wait: alive after the bytes were read, as
	 * before 2026-12-06 (dead, its peer is marked for a registration). */
	if (x->poll && read_dead(d, m->tab->p, m))
		return 0;
	return 1;
}

/* Whether M's server is dead (its pidfd), asked once its lease ran out:
 * dead, P registers again when its address serves; alive, the table was
 * dropped or the server is fenced or stalled. */
static bool read_dead(struct sc_direct *d, struct dpeer *p, const struct dmap *m)
{
	if (!server_dead(m->tab))
		return false;
	/* Only the current table's server being gone says P's is. A read
	 * still on a table of the killed server, once P registered with the
	 * restarted one, must not send P back into its hold-off: that made
	 * it register again and again, and at SD_MAX_TABS tables the peer
	 * took no short-circuit read for good (test_kill9 under load). */
	pthread_rwlock_rdlock(&p->lk);
	bool current = p->tab == m->tab;
	if (current) {
		/* Under the lock: set after the check but outside it, a
		 * registration that swapped the table in between would have
		 * cleared DEAD before this set it, and its new table would be
		 * taken for dead (peer_register). */
		atomic_store(&p->dead_ms, clock_mono_ms());
		atomic_store(&p->dead, 1);
	}
	pthread_rwlock_unlock(&p->lk);
	if (current)
		atomic_fetch_add(&d->dead, 1);
	return true;
}

/* Second half, part two, R's checks all passed: the bytes to R->dst, R
 * final. */
static void read_done(struct sc_direct *d, const struct dmap *m, struct storage_read *r,
		      const struct rd *x)
{
	uint32_t crc = 0;
	if (x->n && x->buf != r->dst)
		memcpy(r->dst, x->buf + (r->off - x->start), x->n);
	if (x->n && x->start == r->off && x->blen == x->n) {
		/* Whole pages: their CRCs, just checked, are the range's (no
		 * second pass). */
		for (uint32_t pg = x->start / SD_PAGE, o = 0; o < x->blen; pg++, o += SD_PAGE) {
			uint32_t plen = x->blen - o < SD_PAGE ? x->blen - o : SD_PAGE;
			crc = !o ? m->crc[pg]
			      : plen == SD_PAGE ? page_shift(crc) ^ m->crc[pg]
						: crc32c_combine(crc, m->crc[pg], plen);
		}
	} else if (x->n) {
		crc = crc32c(0, r->dst, x->n);
	}
	r->result = (int)x->n;
	r->crc = crc;
	r->commit_ver = m->commit_ver;
	atomic_fetch_add(&d->reads, 1);
}

/* Second half (read_check, read_done): an enum sc_direct_res. */
static int read_post(struct sc_direct *d, const struct dmap *m, struct storage_read *r,
		     const struct rd *x, ssize_t res)
{
	int rc = read_check(d, m, x, res);
	if (rc != 1)
		return rc;
	read_done(d, m, r, x);
	return SC_DIRECT_DONE;
}

/* preadv2(FD, one IOV at OFF, RWF_NOWAIT) without glibc's cancellation
 * wrapper (two atomic read-modify-writes of the thread's cancel word
 * around every cancellable call; the mount's threads serve with
 * cancellation off anyway, fuse_loop.c). A page-cache-only read never
 * blocks, so nothing waits in it for a cancellation to act. */
static ssize_t preadv2_nowait(int fd, const struct iovec *iov, uint64_t off)
{
	return syscall(SYS_preadv2, fd, iov, 1, (long)off, (long)(off >> 32), RWF_NOWAIT);
}

/* The I/O of a synchronous read. */
static ssize_t read_io(struct sc_direct *d, const struct dmap *m, const struct rd *x)
{
	if (!x->blen)
		return 0;
	if (!d->wait_disk) {
		/* Page cache hits only (CFS_SHORT_READ=cache); a miss goes over
		 * RPC while the readahead it started fills the page. */
		struct iovec iov = { .iov_base = x->buf, .iov_len = x->blen };
		return preadv2_nowait(m->fd, &iov, m->file_off + x->start);
	}
	will_block(d);
	ssize_t got = pread(m->dfd, x->buf, ALIGN_UP(x->blen), (off_t)(m->file_off + x->start));
	return got >= (ssize_t)x->blen ? (ssize_t)x->blen : got;
}

/* Forgets mapping M of R's chunk (TARGET's) on P, unless replaced
 * meanwhile, and the key with it unless something still needs that. By
 * the chunk's name: the key may be gone (KEYS AND FILES). */
static void map_forget(struct sc_direct *d, struct dpeer *p, uint32_t target,
		       const struct storage_read *r, struct dmap *m)
{
	uint64_t now = clock_mono_ms();
	pthread_rwlock_wrlock(&p->lk);
	struct dkey *k = key_find(p, target, r->ino, r->idx);
	if (k && k->cur == m) {
		key_unmap(d, p, k);
		key_reap(d, p, k, now);
	}
	pthread_rwlock_unlock(&p->lk);
}

/* P registered and taking direct reads now (registers a table when it
 * needs one: may wait); false: read over RPC. */
static bool peer_ready(struct sc_direct *d, struct dpeer *p)
{
	int st = atomic_load(&p->st);
	if (st == PS_OFF && clock_mono_ms() < atomic_load(&p->off_until))
		return false;
	if (st != PS_OK || atomic_load(&p->dead)) {
		pthread_mutex_lock(&p->reg_mu);
		int rc = 0;
		if (atomic_load(&p->st) == PS_OK && !atomic_load(&p->dead)) {
			/* another reader registered meanwhile */
		} else if (p->tab && !atomic_load(&p->dead) && !atomic_load(&p->stale)) {
			/* The end of a hold-off (a refused map) with the
			 * server and its connection still there: that
			 * connection's table is still the one the server
			 * knows. A new one on the same connection would only
			 * be refused (-ESTALE: the server keeps one table a
			 * connection), and registered again, and again. */
			atomic_store(&p->st, PS_OK);
		} else {
			will_block(d);
			rc = peer_register(d, p);
		}
		pthread_mutex_unlock(&p->reg_mu);
		if (rc)
			return false;
	}
	return true;
}

/* The mapping of R's chunk on P (a reference the caller drops), made
 * when there is none (a map RPC: may wait), or NULL: read over RPC. BG:
 * never wait for a map (a registration still may): one is asked for in
 * the background and NULL answered, the caller reading elsewhere. */
/* Under P's lock (either mode; T P->tab, not NULL): whether this thread
 * maps K now (ME_MAPPING set, a reference on T taken for the map). One
 * map RPC per chunk at a time: concurrent readers of the chunk use RPC
 * meanwhile, as do those before its retry time. Under the lock because
 * K may be freed once out of ME_MAPPING (key_reap, keys_make_room). */
static bool map_claim(struct dkey *k, struct dtab *t, uint64_t now)
{
	int idle = ME_NONE;
	if (now < atomic_load(&k->retry_ms) ||
	    !atomic_compare_exchange_strong(&k->st, &idle, ME_MAPPING))
		return false;
	dtab_get(t); /* the map's, from the peer's (under its lock) */
	return true;
}

static struct dmap *mapping_get(struct sc_direct *d, struct dpeer *p, uint32_t target,
				uint32_t chain, const struct storage_read *r, bool bg)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!peer_ready(d, p))
			return NULL;
		pthread_rwlock_rdlock(&p->lk);
		struct dkey *k = key_find(p, target, r->ino, r->idx);
		struct dmap *m = k ? k->cur : NULL;
		struct dtab *t = p->tab;
		bool mine = false;
		if (m) {
			atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
			if (!atomic_load_explicit(&k->used, memory_order_relaxed))
				atomic_store_explicit(&k->used, 1, memory_order_relaxed);
		} else if (k && !attempt && t) {
			mine = map_claim(k, t, clock_mono_ms());
		}
		pthread_rwlock_unlock(&p->lk);
		if (m)
			return m;
		if (attempt || !t)
			return NULL;
		if (!k) {
			uint64_t now = clock_mono_ms();
			pthread_rwlock_wrlock(&p->lk);
			t = p->tab;
			if (t && (k = key_get_locked(d, p, target, r->ino, r->idx)) && k->cur) {
				m = k->cur; /* mapped meanwhile */
				atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
			} else if (k) {
				mine = map_claim(k, t, now);
			}
			pthread_rwlock_unlock(&p->lk);
			if (m)
				return m;
		}
		if (!mine)
			return NULL;
		if (bg) {
			map_chunk_bg(d, p, k, chain, t);
			return NULL;
		}
		will_block(d);
		map_chunk(d, p, k, chain, t);
	}
	return NULL;
}

int sc_direct_read(struct sc_direct *d, const char *addr, uint32_t target, uint32_t chain,
		   struct storage_read *r)
{
	if (!d || !r->len || r->len > (d->big ? SC_DIRECT_MAX : SC_DIRECT_ASYNC_MAX))
		return 0;
	struct dpeer *p = peer_get(d, addr);
	int done = SC_DIRECT_RPC;
	for (int attempt = 0; p && attempt < 2; attempt++) {
		struct dmap *m = mapping_get(d, p, target, chain, r, false);
		if (!m)
			break;
		struct rd x;
		bool stale = false;
		done = SC_DIRECT_RPC;
		if (read_pre(d, p, m, r, &x, NULL, BUF_TLS, &stale)) {
			ssize_t res = read_io(d, m, &x);
			void (*mid)(uint64_t, uint32_t) =
				atomic_load_explicit(&d->test_mid, memory_order_relaxed);
			if (mid)
				mid(r->ino, r->idx);
			done = read_post(d, m, r, &x, res);
		}
		free(x.own);
		if (stale)
			map_forget(d, p, target, r, m);
		dmap_put(d, m);
		if (done == SC_DIRECT_DONE)
			return done;
		if (!stale)
			break;
	}
	atomic_fetch_add(&d->fallbacks, 1);
	return done;
}

static void *abuf_get(struct sc_direct *d, size_t n)
{
	if (n > SD_SMALL)
		return aligned_alloc(SD_PAGE, n);
	void *b = NULL;
	pthread_mutex_lock(&d->pool_mu);
	if (d->npool)
		b = d->pool[--d->npool];
	pthread_mutex_unlock(&d->pool_mu);
	return b ? b : aligned_alloc(SD_PAGE, SD_SMALL);
}

static void abuf_put(struct sc_direct *d, void *b, size_t n)
{
	if (b && n <= SD_SMALL) {
		pthread_mutex_lock(&d->pool_mu);
		if (d->npool < SD_POOL) {
			d->pool[d->npool++] = b;
			b = NULL;
		}
		pthread_mutex_unlock(&d->pool_mu);
	}
	free(b);
}

/* The caller of sc_direct_read_batch waits here for its reads. */
struct bwait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t left;
};

/* One async read on the ring. */
struct aop {
	struct bwait *w;        /* a batch's: the completion stores RES and counts down */
	int *res;
	struct sc_direct *d;
	struct dpeer *p;
	struct dmap *m;
	struct storage_read *r;
	struct rd x;
	void *bounce;  /* X.buf when it is a pool buffer (abuf_put); NULL: R->dst */
	size_t bufsz;
	int cres;      /* the CQE's (an async read's; a batch's goes to *RES) */
	int ok;
	void (*done)(void *arg, int ok);
	void *arg;
};

/* Async read records are taken on a reader's thread and released on the
 * completion thread: malloc's per-thread caches never get them back
 * where they are wanted, so idle ones wait here (as the small buffers). */
static struct aop *aop_get(struct sc_direct *d)
{
	pthread_mutex_lock(&d->pool_mu);
	struct aop *o = d->aops;
	if (o) {
		d->aops = (struct aop *)o->arg;
		d->naops--;
	}
	pthread_mutex_unlock(&d->pool_mu);
	return o ? o : malloc(sizeof(*o));
}

static void aop_put(struct sc_direct *d, struct aop *o)
{
	if (!o)
		return;
	pthread_mutex_lock(&d->pool_mu);
	if (d->naops < SD_POOL) {
		o->arg = d->aops;
		d->aops = o;
		d->naops++;
		o = NULL;
	}
	pthread_mutex_unlock(&d->pool_mu);
	free(o);
}

static void aops_free(struct sc_direct *d)
{
	for (struct aop *o = d->aops, *n; o; o = n) {
		n = (struct aop *)o->arg;
		free(o);
	}
	d->aops = NULL;
	d->naops = 0;
}

/* Completions taken off the ring at once. */
#define SD_BATCH 32

/* Finishes the N reads of one batch of completions (read_check each),
 * then runs their DONEs. */
static void aio_batch(struct sc_direct *d, struct aop **ops, int n)
{
	for (int i = 0; i < n; i++) {
		struct aop *o = ops[i];
		int res = o->cres >= (int)o->x.blen ? (int)o->x.blen : o->cres;
		o->ok = read_check(d, o->m, &o->x, res);
	}
	for (int i = 0; i < n; i++) {
		struct aop *o = ops[i];
		int ok = o->ok == 1 ? SC_DIRECT_DONE : o->ok < 0 ? SC_DIRECT_CORRUPT : SC_DIRECT_RPC;
		if (ok == SC_DIRECT_DONE)
			read_done(d, o->m, o->r, &o->x);
		else
			atomic_fetch_add(&d->fallbacks, 1);
		dmap_put(d, o->m);
		abuf_put(d, o->bounce, o->bufsz);
		void (*done)(void *, int) = o->done;
		void *darg = o->arg;
		aop_put(d, o);
		done(darg, ok);
	}
}

static void *aio_main(void *arg)
{
	struct sc_direct *d = arg;
	/* Every read waits on this thread's turns (sched_hint.h). */
	sched_hint_latency();
	for (bool stop = false; !stop;) {
		struct io_uring_cqe *cqe, *cqes[SD_BATCH];
		int rc = io_uring_wait_cqe(&d->ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc)
			break;
		struct aop *ops[SD_BATCH];
		int n = 0;
		unsigned got = io_uring_peek_batch_cqe(&d->ring, cqes, SD_BATCH);
		for (unsigned i = 0; i < got; i++) {
			struct aop *o = io_uring_cqe_get_data(cqes[i]);
			if (!o) {
				stop = true; /* sc_direct_free: nothing after it */
				continue;
			}
			if (o->w) {
				/* A batch's read: its caller checks it (the CRCs of
				 * large reads on the callers' threads, not on this
				 * one). */
				struct bwait *w = o->w;
				*o->res = cqes[i]->res;
				free(o);
				pthread_mutex_lock(&w->mu);
				if (--w->left == 0)
					pthread_cond_signal(&w->cv);
				pthread_mutex_unlock(&w->mu);
				continue;
			}
			o->cres = cqes[i]->res;
			ops[n++] = o;
		}
		io_uring_cq_advance(&d->ring, got);
		aio_batch(d, ops, n);
	}
	return NULL;
}

/* Submits until the kernel took WANT queued reads: an SQE once queued is
 * the kernel's to complete (its user data is freed by the completion), so
 * a failed submit (-EBUSY while completions wait, -EINTR) is retried, never
 * abandoned. Call under ring_mu. */
static void ring_flush(struct sc_direct *d, unsigned want)
{
	while (want > 0) {
		int rc = io_uring_submit(&d->ring);
		if (rc > 0)
			want -= (unsigned)rc < want ? (unsigned)rc : want;
		else
			usleep(50);
	}
}

/* What read_cached found. */
enum { RC_DONE, RC_RPC, RC_MISS, RC_DIRECT };

/* The page-cache attempt of an async read (unless CFS_SHORT_READ_CACHED=0), on
 * the caller's thread, X prepared by read_pre: X's pages from the buffered
 * descriptor if the cache holds them all (preadv2 RWF_NOWAIT), then the
 * whole rule (read_post: CRCs, slot word, lease). RC_DONE: R is
 * final, the caller answers at once (no ring, no completion thread, no
 * wake-up). RC_MISS: not all cached; the probe started the kernel's read
 * of the missing pages into the cache, so the ring's read goes through
 * the buffered descriptor too (it waits for those pages: one disk read,
 * and the next read of the page hits). RC_DIRECT: a page failed its CRC
 * with the slot still valid; as the engine's cached reads
 * (chunk_engine.c "Page-cache reads") only an O_DIRECT read may call a
 * block corrupt, so the ring reads it O_DIRECT (read_check dropped the
 * cached pages). RC_RPC: the slot moved or the lease ran out (*STALE
 * set when the slot moved). COUNTED: the probe's outcome goes to the
 * adaptive policy (d->probe: reads of at most SD_SMALL). */
static int read_cached(struct sc_direct *d, const struct dmap *m, struct storage_read *r,
		       const struct rd *x, bool *stale, bool counted)
{
	struct iovec iov = { .iov_base = x->buf, .iov_len = x->blen };
	ssize_t got = preadv2_nowait(m->fd, &iov, m->file_off + x->start);
	if (counted)
		cache_probe_report(&d->probe, got >= (ssize_t)x->blen);
	if (got < (ssize_t)x->blen) {
		atomic_fetch_add_explicit(&d->cached_misses, 1, memory_order_relaxed);
		return RC_MISS;
	}
	const _Atomic uint64_t *slot =
		(const _Atomic uint64_t *)(m->tab->base + STO_SC_HDR + 8ull * m->slot);
	int rc = read_post(d, m, r, x, got);
	if (rc == SC_DIRECT_DONE) {
		atomic_fetch_add_explicit(&d->cached_hits, 1, memory_order_relaxed);
		return RC_DONE;
	}
	if (rc == SC_DIRECT_CORRUPT) {
		atomic_fetch_sub(&d->corrupt, 1); /* not yet: the direct read decides */
		return RC_DIRECT;
	}
	*stale = atomic_load(slot) != x->s1;
	return RC_RPC;
}

/* sc_direct_read_async on ADDR's copy (BG: as mapping_get's). 1 the
 * read is DONE's, 0 not. */
static int read_async_at(struct sc_direct *d, const char *addr, uint32_t target, uint32_t chain,
			 struct storage_read *r, void (*done)(void *arg, int ok), void *arg,
			 bool bg)
{
	struct dpeer *p = peer_get(d, addr);
	for (int attempt = 0; p && attempt < 2; attempt++) {
		struct dmap *m = mapping_get(d, p, target, chain, r, bg);
		if (!m)
			break;
		/* The read's state stays on the stack until it goes to the
		 * ring: a page-cache hit takes no record (and no pool lock). */
		struct rd x;
		size_t bufsz = 0;
		uint8_t *buf = NULL;
		bool stale = false;
		/* Whole pages into a page-aligned R->dst land there (O_DIRECT
		 * needs the alignment): no bounce buffer, no copy. Its bytes
		 * are only R's once checked; until then R->dst is the caller's
		 * scratch, as the contract allows. */
		int go = read_pre(d, p, m, r, &x, r->dst, BUF_TLS, &stale);
		if (go && x.blen &&
		    ((uintptr_t)r->dst % SD_PAGE || x.start != r->off ||
		     x.blen != x.n || x.blen % SD_PAGE)) {
			bufsz = ALIGN_UP(r->len) + SD_PAGE;
			go = (buf = abuf_get(d, bufsz)) != NULL;
			x.buf = buf;
		}
		if (go && !x.blen) {
			/* Nothing to read (past the end): the second half now. */
			go = read_post(d, m, r, &x, 0) == SC_DIRECT_DONE;
			dmap_put(d, m);
			abuf_put(d, buf, bufsz);
			if (go) {
				done(arg, SC_DIRECT_DONE);
				return 1;
			}
			break;
		}
		/* While the cache is cold for small reads (a working set larger
		 * than memory: common/cache_probe.h) most of them skip the probe
		 * and go O_DIRECT, so misses neither cost it nor fill the cache.
		 * Larger reads (read-ahead of a sequential reader, which a drop
		 * of caches leaves all misses) always probe and are not counted:
		 * they would turn the policy cold for the random reads after. */
		bool counted = !d->probe_all && r->len <= SD_SMALL;
		int how = go && d->cached && (!counted || cache_probe_wanted(&d->probe))
				  ? read_cached(d, m, r, &x, &stale, counted)
				  : RC_DIRECT;
		if (how == RC_DONE) {
			dmap_put(d, m);
			abuf_put(d, buf, bufsz);
			done(arg, SC_DIRECT_DONE);
			return 1;
		}
		if (how == RC_RPC)
			go = 0;
		struct aop *o = go ? aop_get(d) : NULL;
		if (o) {
			*o = (struct aop){ .d = d, .p = p, .m = m, .r = r, .x = x, .bounce = buf,
					   .bufsz = bufsz, .done = done, .arg = arg };
			pthread_mutex_lock(&d->ring_mu);
			struct io_uring_sqe *sqe = io_uring_get_sqe(&d->ring);
			if (sqe) {
				/* a cache miss waits for the pages its probe
				 * started reading (RC_MISS) */
				if (how == RC_MISS)
					io_uring_prep_read(sqe, m->fd, x.buf, x.blen,
							   m->file_off + x.start);
				else
					io_uring_prep_read(sqe, m->dfd, x.buf,
							   ALIGN_UP(x.blen),
							   m->file_off + x.start);
				io_uring_sqe_set_data(sqe, o);
				ring_flush(d, 1);
			} else {
				go = 0;
			}
			pthread_mutex_unlock(&d->ring_mu);
			if (go)
				return 1;
			aop_put(d, o);
		}
		if (stale)
			map_forget(d, p, target, r, m);
		dmap_put(d, m);
		abuf_put(d, buf, bufsz);
		if (!stale)
			break;
	}
	return 0;
}

int sc_direct_read_async(struct sc_direct *d, const char *addr, uint32_t target, uint32_t chain,
			 struct storage_read *r, void (*done)(void *arg, int ok), void *arg)
{
	if (!d || !d->ring_ok || !r->len || r->len > SC_DIRECT_ASYNC_MAX)
		return 0;
	if (read_async_at(d, addr, target, chain, r, done, arg, false))
		return 1;
	atomic_fetch_add(&d->fallbacks, 1);
	return 0;
}

int sc_direct_read_async_alt(struct sc_direct *d, const char *addr, uint32_t target,
			     const char *alt_addr, uint32_t alt_target, uint32_t chain,
			     struct storage_read *r, void (*done)(void *arg, int ok), void *arg,
			     uint32_t *target_read)
{
	if (!d || !d->ring_ok || !r->len || r->len > SC_DIRECT_ASYNC_MAX)
		return 0;
	*target_read = target;
	if (read_async_at(d, addr, target, chain, r, done, arg, alt_addr != NULL))
		return 1;
	*target_read = alt_target;
	if (alt_addr && sc_direct_usable(d, alt_addr) &&
	    read_async_at(d, alt_addr, alt_target, chain, r, done, arg, false))
		return 1;
	atomic_fetch_add(&d->fallbacks, 1);
	return 0;
}

/* The calling thread's own ring for batch reads (NULL: none; the batch
 * uses the shared ring and its completion thread). Why its own: a read
 * on the shared ring completes through three wake-ups (the submitting
 * thread runs the I/O's task work, the completion thread reaps, the
 * batch's caller is signalled), each a wait for a CPU on a loaded host;
 * on a ring with deferred task work that only this thread submits to and
 * waits on, the kernel wakes it once, when the batch's last read is
 * done, and completes the reads on its own turn. One ring (a file
 * descriptor, a few pages) per thread that makes batch reads, freed when
 * it ends. */
#define SD_OWN_ENTRIES 64
struct own_ring {
	struct io_uring ring;
	pid_t pid; /* the process that made it (a forked child makes its own) */
};
static pthread_key_t own_key;
static bool own_key_ok;
static pthread_once_t own_once = PTHREAD_ONCE_INIT;

static void own_free(void *arg)
{
	struct own_ring *o = arg;
	if (o && o->pid == getpid())
		io_uring_queue_exit(&o->ring);
	free(o);
}

static void own_init(void)
{
	const char *e = getenv("CFS_SC_BATCH_OWN_RING");
	own_key_ok = (!e || strcmp(e, "0")) && !pthread_key_create(&own_key, own_free);
}

static struct io_uring *own_ring(void)
{
	pthread_once(&own_once, own_init);
	if (!own_key_ok)
		return NULL;
	struct own_ring *o = pthread_getspecific(own_key);
	if (o && o->pid == getpid())
		return &o->ring;
	if (o) /* inherited through fork: the parent's */
		free(o);
	pthread_setspecific(own_key, NULL);
	if (!(o = calloc(1, sizeof(*o))))
		return NULL;
	if (io_uring_queue_init(SD_OWN_ENTRIES, &o->ring,
				IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) &&
	    io_uring_queue_init(SD_OWN_ENTRIES, &o->ring, 0)) {
		free(o);
		return NULL;
	}
	o->pid = getpid();
	if (pthread_setspecific(own_key, o)) {
		own_free(o);
		return NULL;
	}
	return &o->ring;
}

/* One range of a batch between submission and check. */
struct bop {
	struct dpeer *p;
	struct dmap *m;   /* NULL: not read this way */
	struct rd x;
	int res;
	struct aop *o;    /* on the ring until the completion thread frees it */
};

/* Whether R's chunk has a mapping on P now (a hint: mapping_get of it
 * then needs no RPC unless the mapping goes meanwhile). */
static bool mapped_now(struct dpeer *p, uint32_t target, const struct storage_read *r)
{
	if (atomic_load(&p->st) != PS_OK || atomic_load(&p->dead))
		return false;
	pthread_rwlock_rdlock(&p->lk);
	struct dkey *k = key_find(p, target, r->ino, r->idx);
	bool m = k && k->cur;
	pthread_rwlock_unlock(&p->lk);
	return m;
}

/* Waits for at least WANT completions of batch B's reads on its own ring
 * and takes every one there is; returns how many. */
static unsigned own_reap(struct io_uring *ring, struct bop *b, unsigned want)
{
	struct io_uring_cqe *cqe;
	while (io_uring_wait_cqe_nr(ring, &cqe, want) < 0)
		; /* -EINTR; an SQE once submitted always completes */
	unsigned head, got = 0;
	io_uring_for_each_cqe(ring, head, cqe) {
		b[io_uring_cqe_get_data64(cqe)].res = cqe->res;
		got++;
	}
	io_uring_cq_advance(ring, got);
	return got;
}

/* Submits the read queued on batch B's own ring and counts it in
 * *INFLIGHT: an SQE once queued is the kernel's to complete (it reads
 * into the batch's memory), so a failed submit is retried after taking a
 * completion (or a pause), never abandoned. */
static void own_submit(struct io_uring *ring, struct bop *b, unsigned *inflight)
{
	int rc;
	while ((rc = io_uring_submit(ring)) <= 0) {
		if (*inflight)
			*inflight -= own_reap(ring, b, 1);
		else
			usleep(50);
	}
	*inflight += (unsigned)rc;
}

/* Flushes the submission queue (ring_mu held): a full completion queue
 * (-EBUSY) or a lack of resources clears as the completion thread reaps. */
/* One SC_MAP_MANY for the N keys K of P on table T (each ME_MAPPING, set
 * by the caller, each with a reference on T the caller passes on; CHAIN[i]
 * K[i]'s chain): waits for it and publishes each answer as map_finish
 * does. An entry past the server's answer budget (-EMSGSIZE) is left to
 * a map of its own. An old server (-CFS_EBADMSG_TYPE) is remembered: its
 * chunks are mapped one by one from then on; it closed the connection
 * (and so dropped the table), so the next map registers a new table. */
static void map_many(struct sc_direct *d, struct dpeer *p, struct dkey **k,
		     const uint32_t *chain, size_t n, struct dtab *t)
{
	struct sto_sc_map_ent ent[STO_SC_MAP_MANY_MAX];
	struct sto_sc_map_many_res res[STO_SC_MAP_MANY_MAX];
	for (size_t i = 0; i < n; i++)
		ent[i] = (struct sto_sc_map_ent){ .target = k[i]->target, .chain = chain[i],
						  .ino = k[i]->ino, .idx = k[i]->idx };
	struct rpc_peer *rp;
	char err[128];
	struct buf b, resp;
	buf_init(&b);
	buf_init(&resp);
	int rc = rpc_client_peer(d->rpc, p->addr, &rp, err, sizeof(err));
	struct sto_sc_map_many_req q = { .region = t->region, .n = (uint32_t)n, .e = ent };
	if (!rc)
		rc = sto_sc_map_many_req_encode(&b, &q);
	if (!rc) {
		struct rpc_call cl = { .type = STO_MSG_SC_MAP_MANY, .payload = b.data,
				       .payload_len = (uint32_t)b.len, .timeout_ms = 5000 };
		atomic_fetch_add(&d->map_many, 1);
		rc = rpc_call(rp, &cl, &resp, NULL);
	}
	struct sto_sc_map_many_resp mr;
	if (!rc && (sto_sc_map_many_resp_decode(resp.data, resp.len, &mr, res, n) || mr.n != n))
		rc = -CFS_EPROTO;
	if (rc == -CFS_EBADMSG_TYPE) {
		if (!atomic_exchange(&p->no_many, 1))
			LOG_NOTICE("sc_direct", "%s: no SC_MAP_MANY (an older server): one map a chunk",
				   p->addr);
		pthread_rwlock_wrlock(&p->lk);
		if (p->tab == t) {
			atomic_store(&p->stale, 1);
			atomic_store(&p->st, PS_NONE);
		}
		for (size_t i = 0; i < n; i++)
			atomic_store(&k[i]->st, ME_NONE);
		pthread_rwlock_unlock(&p->lk);
		for (size_t i = 0; i < n; i++)
			dtab_put(d, t);
	} else {
		for (size_t i = 0; i < n; i++) {
			if (!rc && res[i].result == -EMSGSIZE) {
				atomic_store(&k[i]->st, ME_NONE);
				dtab_put(d, t);
				continue;
			}
			map_finish(d, p, k[i], t, rc ? rc : res[i].result, rc ? NULL : res[i].body,
				   rc ? 0 : res[i].len);
		}
	}
	buf_fini(&b);
	buf_fini(&resp);
}

/* The chunks of batch IT whose ranges wait for a first mapping (LATER),
 * mapped with one SC_MAP_MANY per server (of at most STO_SC_MAP_MANY_MAX
 * chunks each) instead of one SC_MAP each; the batch's mapped ranges are
 * on the disk meanwhile. A chunk this leaves unmapped (refused, busy,
 * an old server) is read as before: mapping_get maps it alone or the
 * range goes over RPC. */
static void batch_maps(struct sc_direct *d, const struct sc_direct_item *it, const struct bop *b,
		       const bool *later, bool *seen, size_t n, size_t from, size_t group)
{
	size_t cap = group && group < STO_SC_MAP_MANY_MAX ? group : STO_SC_MAP_MANY_MAX;
	struct dkey **ks = malloc(cap * sizeof(*ks));
	uint32_t *ch = malloc(cap * sizeof(*ch));
	for (size_t i = from; ks && ch && i < n; i++) {
		if (!later[i] || seen[i])
			continue;
		struct dpeer *p = b[i].p;
		size_t want = 0;
		for (size_t j = i; j < n; j++)
			want += later[j] && !seen[j] && b[j].p == p;
		if (want < 2 || atomic_load(&p->no_many) || !peer_ready(d, p)) {
			for (size_t j = i; j < n; j++)
				if (b[j].p == p)
					seen[j] = true;
			continue;
		}
		size_t m = 0;
		uint64_t now = clock_mono_ms();
		pthread_rwlock_wrlock(&p->lk);
		struct dtab *t = p->tab;
		for (size_t j = i; j < n && m < cap; j++) {
			if (!later[j] || seen[j] || b[j].p != p)
				continue;
			seen[j] = true;
			const struct storage_read *r = it[j].r;
			struct dkey *k = t ? key_get_locked(d, p, it[j].target, r->ino, r->idx)
					   : NULL;
			if (!k || k->cur || !map_claim(k, t, now))
				continue; /* mapped, waiting, or being mapped: as before */
			ks[m] = k;
			ch[m++] = it[j].chain;
		}
		pthread_rwlock_unlock(&p->lk);
		if (m) {
			will_block(d);
			map_many(d, p, ks, ch, m, t);
		}
		if (group)
			break; /* the next group when the batch's reads reach it */
		i--; /* P's chunks past the bound, if any, go in the next request */
	}
	free(ks);
	free(ch);
}

size_t sc_direct_read_batch(struct sc_direct *d, struct sc_direct_item *it, size_t n)
{
	size_t done = 0;
	if (!d)
		return 0;
	for (size_t i = 0; i < n; i++)
		it[i].ok = 0;
	if (!d->big)
		return 0;
	struct bop *b = d->ring_ok && n > 1 ? calloc(n, sizeof(*b)) : NULL;
	if (!b) {
		for (size_t i = 0; i < n; i++) {
			it[i].ok = sc_direct_read(d, it[i].addr, it[i].target, it[i].chain, it[i].r);
			done += it[i].ok == SC_DIRECT_DONE;
		}
		return done;
	}
	/* Mappings and first halves, each read on the ring as soon as its
	 * chunk's mapping is there: the ranges of mapped chunks first (pass
	 * 0), then those whose first mapping waits for a map RPC (every chunk
	 * of a batch after a put), each read on the disk while the next
	 * range's map RPC runs, instead of every map RPC first, one after
	 * another. */
	struct io_uring *own = own_ring();
	unsigned inflight = 0; /* on OWN */
	struct bwait w = { .left = 0 };
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	bool *later = calloc(n, sizeof(*later)); /* NULL: one pass in order */
	bool *seen = later && d->many ? calloc(n, sizeof(*seen)) : NULL; /* asked in batch_maps */
	for (size_t j = 0; j < (later ? 2 * n : n); j++) {
		size_t i = j % n;
		struct storage_read *r = it[i].r;
		if (j >= n && seen && later[i] && !seen[i])
			/* The first mappings: one RPC a server for all of them, or
			 * one per group, each group's reads on the disk while the
			 * next group is mapped (CFS_SC_MAP_MANY=N). */
			batch_maps(d, it, b, later, seen, n, d->many_group ? i : 0, d->many_group);
		if (j >= n && !later[i])
			continue; /* done in pass 0 */
		if (j < n) {
			if (!r->len || r->len > SC_DIRECT_MAX || !(b[i].p = peer_get(d, it[i].addr)))
				continue;
			if (later && !mapped_now(b[i].p, it[i].target, r)) {
				later[i] = true;
				continue;
			}
		}
		b[i].m = mapping_get(d, b[i].p, it[i].target, it[i].chain, r, false);
		bool stale = false;
		if (b[i].m && (!read_pre(d, b[i].p, b[i].m, r, &b[i].x, NULL, BUF_OWN, &stale) ||
			       (b[i].x.blen && !own && !(b[i].o = calloc(1, sizeof(*b[i].o)))))) {
			if (stale)
				map_forget(d, b[i].p, it[i].target, r, b[i].m);
			dmap_put(d, b[i].m);
			free(b[i].x.own);
			b[i].m = NULL;
		}
		if (!b[i].m || !b[i].x.blen)
			continue;
		if (own) {
			/* At most SD_OWN_ENTRIES in flight, so the completion
			 * queue (twice that) never overflows. */
			if (inflight >= SD_OWN_ENTRIES)
				inflight -= own_reap(own, b, 1);
			struct io_uring_sqe *sqe = io_uring_get_sqe(own);
			if (sqe) {
				io_uring_prep_read(sqe, b[i].m->dfd, b[i].x.buf,
						   ALIGN_UP(b[i].x.blen),
						   b[i].m->file_off + b[i].x.start);
				io_uring_sqe_set_data64(sqe, i);
				own_submit(own, b, &inflight);
			} else { /* not this way (not seen: each SQE is submitted when queued) */
				dmap_put(d, b[i].m);
				free(b[i].x.own);
				b[i].m = NULL;
			}
			continue;
		}
		pthread_mutex_lock(&d->ring_mu);
		struct io_uring_sqe *sqe = io_uring_get_sqe(&d->ring);
		if (sqe) {
			*b[i].o = (struct aop){ .w = &w, .res = &b[i].res };
			io_uring_prep_read(sqe, b[i].m->dfd, b[i].x.buf, ALIGN_UP(b[i].x.blen),
					   b[i].m->file_off + b[i].x.start);
			io_uring_sqe_set_data(sqe, b[i].o);
			pthread_mutex_lock(&w.mu);
			w.left++;
			pthread_mutex_unlock(&w.mu);
			ring_flush(d, 1);
		}
		pthread_mutex_unlock(&d->ring_mu);
		if (!sqe) { /* not this way */
			free(b[i].o);
			b[i].o = NULL;
			dmap_put(d, b[i].m);
			free(b[i].x.own);
			b[i].m = NULL;
		}
	}
	free(later);
	free(seen);
	if (inflight) {
		will_block(d);
		while (inflight)
			inflight -= own_reap(own, b, inflight);
	}
	pthread_mutex_lock(&w.mu);
	if (w.left) {
		pthread_mutex_unlock(&w.mu);
		will_block(d);
		pthread_mutex_lock(&w.mu);
		while (w.left)
			pthread_cond_wait(&w.cv, &w.mu);
	}
	pthread_mutex_unlock(&w.mu);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	/* Second halves, on this thread. */
	for (size_t i = 0; i < n; i++) {
		if (b[i].m) {
			int res = b[i].res;
			if (b[i].x.blen && res >= (int)b[i].x.blen)
				res = (int)b[i].x.blen;
			it[i].ok = read_post(d, b[i].m, it[i].r, &b[i].x,
					     b[i].x.blen ? res : 0);
			dmap_put(d, b[i].m);
			free(b[i].x.own);
		}
		if (it[i].ok == SC_DIRECT_DONE)
			done++;
		else
			atomic_fetch_add(&d->fallbacks, 1);
	}
	free(b);
	return done;
}
