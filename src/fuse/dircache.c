/* dircache.c - tracked kernel names and the directory-count poll
 * (dircache.h).
 *
 * HOW IT WORKS. A hash table of directories (struct dc_dir), each with the
 * set of names handed to the kernel since its last invalidation, the
 * entry-change count meta reported at the last poll (ver, known), the
 * number of this mount's own changes since (own), and a generation that
 * changes at every invalidation. A poll snapshots (ino, own, gen) of every
 * directory, reads the counts in one RPC per 1024 directories, and for
 * each directory whose count is not exactly ver + own-at-snapshot takes
 * its names out and has the kernel drop them.
 *
 * WHY THE COUNTING IS SAFE. An own change runs under own_lock (read) from
 * before its meta call until it is counted; a poll holds own_lock (write)
 * from its snapshot until its read came back. So an own change counted in
 * the snapshot committed before the read, and one not in it commits after
 * the read: a count of exactly ver + own means nobody else changed the
 * directory. Counting too few only invalidates (a call whose outcome is
 * unknown is not counted); counting too many could hide a foreign change,
 * which is why only calls that change the directory exactly once count.
 * (Without the lock, a single thread creating files kept a create in
 * flight across most polls: a third of them invalidated the directory.)
 *
 * THE NOTIFIER. Telling the kernel a name expired (inval_entry) makes the
 * kernel take the directory's lock, which a create, lookup or unlink in
 * that directory holds while it waits for this mount's answer. So a
 * notification may wait for a request to be answered, and no thread that
 * answers requests (a FUSE worker: dircache_sync from a lock grant), or
 * that holds a lock such a thread waits for (poll_mu: dircache_sync
 * waits for it), may send one: with every worker busy the mount hung
 * (a worker in the notification, the create holding the lock queued
 * behind it; test_integ_notify). Polls hand their names to one notifier
 * thread instead (a FIFO of batches) and never wait for it. The queue is
 * bounded: a poll that finds DC_NOTIFY_MAX names still queued does not
 * take the names of a changed directory but starts its new generation
 * (lookups in flight are not cached long) and leaves the names tracked
 * with FORCE set, so a later poll, when the notifier caught up, hands
 * them over; nothing is dropped.
 *
 * Invariants: dc_dir fields and the names are guarded by dircache.mu;
 * polls are serialised by poll_mu; the kernel is only told by the
 * notifier thread, which holds no lock meanwhile; nq_mu (the queue) is
 * taken after mu or alone, never before it.
 */
#define FUSE_USE_VERSION 312
#include "fuse/dircache.h"

#include <errno.h>
#include <fuse3/fuse_lowlevel.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "common/block_hint.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"

#define DC_BUCKETS   4096
#define DC_BATCH     1024                /* META_RPC_DIRVER_MAX */
#define DC_MAX_NAMES (2u << 20)          /* tracked names over all directories */
#define DC_FAIL_NS   (1000ull * 1000000) /* failing polls this long: drop everything */
/* A directory unused this long has its names dropped and leaves the poll,
 * so the poll's cost follows the directories in use, not every one a
 * tree walk passed through within the timeouts. */
#define DC_IDLE_NS  (10000ull * 1000000)
#define DC_MAX_DIRS 65536 /* beyond: names go to the kernel uncached */
#define DC_SYNC_WAIT_S 5  /* dircache_sync waits this long for a running poll */
#define DC_NOTIFY_MAX  (64u << 10) /* queued names beyond which polls defer */
/* dircache_list: directories with more entries stay incomplete (their
 * names would cost memory and a listing of several pages for lookups a
 * cached negative entry answers as well); CFS_DIRCACHE_LIST_MAX overrides,
 * 0 turns listing off. All complete directories together hold at most
 * DC_LIST_BUDGET names before a listing is refused. */
#define DC_LIST_MAX_DEFAULT 4096
#define DC_LIST_BUDGET      (1u << 18)
#define DC_LIST_PAGE        1024            /* META_RPC_READDIR_MAX */
#define DC_LIST_RETRY_NS    (1000ull * 1000000) /* after a listing that did not complete */

struct dc_dir {
	struct dc_dir *next; /* bucket chain */
	uint64_t ino;
	uint64_t gen;     /* changes at every invalidation */
	uint64_t ver;     /* meta's count at the last poll (known) */
	int known;        /* ver is meaningful */
	int force;        /* invalidate at the next poll (too many names) */
	uint64_t own;     /* own changes counted since the last poll's snapshot */
	uint64_t last_ns; /* mono ns of the last begin/note */
	char **set;       /* open addressing; NULL slots empty */
	size_t n, cap;
	/* Complete: made by this mount's mkdir and changed by nobody else
	 * since (no invalidation): pres then holds every name it has, so an
	 * absent name needs no lookup. Open addressing with tombstones. */
	int complete;
	char **pres;
	size_t pres_n, pres_used, pres_cap; /* live; live + tombstones; slots */
	uint64_t list_after_ns; /* no dircache_list before this (mono ns) */
	uint64_t adds;          /* own changes that added a name, ever */
};

static void pres_drop(dircache *dc, struct dc_dir *d);

static char tomb_byte;
#define TOMB           (&tomb_byte)
#define DC_MAX_PRESENT (1u << 20) /* names of one complete directory */

struct inval {
	uint64_t parent;
	char *name; /* owned */
};

/* One poll's names for the notifier. */
struct nbatch {
	struct nbatch *next;
	struct inval *l; /* owned */
	size_t n;
};

struct dircache {
	meta_client *mc;
	struct fuse_session *se;
	uint32_t poll_ms;
	uint64_t ttl_ns;
	_Atomic uint32_t list_max; /* dircache_list: most entries; 0: off */
	_Atomic int old_meta;      /* meta answered DIRLIST "bad type" */
	pthread_mutex_t mu; /* guards everything below up to poll_mu */
	struct dc_dir *tab[DC_BUCKETS];
	size_t ndirs, nnames;
	size_t npres; /* names in the pres sets of all directories */
	/* Names dircache_list took out of directories no poll had read yet:
	 * the next poll tells the kernel (a lookup handler must not). */
	struct inval *pend;
	size_t npend, pendcap;
	uint64_t gen_next;
	uint64_t fail_since_ns; /* 0: the last poll succeeded */
	/* Set and cleared under mu; dircache_healthy reads it without (a
	 * flag alone, publishing nothing: a read racing with the poll that
	 * flips it takes either side, as it could under mu). */
	_Atomic int unhealthy;
	pthread_mutex_t poll_mu;   /* one poll at a time */
	pthread_rwlock_t own_lock; /* own calls (read) vs a poll's read (write) */
	pthread_t th;
	pthread_mutex_t stop_mu;
	pthread_cond_t stop_cv;
	int stop;
	_Atomic int stopping; /* no more notifications (dircache_stop) */
	_Atomic int drop_entries; /* the kernel refused FUSE_EXPIRE_ONLY: drop names */
	int joined;
	/* The notifier (THE NOTIFIER): a FIFO of batches and the count of
	 * names in it, guarded by nq_mu. */
	pthread_t nth;
	pthread_mutex_t nq_mu;
	pthread_cond_t nq_cv;
	struct nbatch *nq_head, **nq_tail;
	size_t nq_names;
	int nq_stop;
	int poll_joined, notify_joined;
	_Atomic uint64_t polls, poll_failures, invalidations, deferred, lists;
};

static size_t bucket(uint64_t ino)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 52) % DC_BUCKETS;
}

static uint64_t name_hash(const char *s)
{
	/* FNV-1a */
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

static struct dc_dir *dir_find(dircache *dc, uint64_t ino)
{
	for (struct dc_dir *d = dc->tab[bucket(ino)]; d; d = d->next)
		if (d->ino == ino)
			return d;
	return NULL;
}

static struct dc_dir *dir_get(dircache *dc, uint64_t ino)
{
	struct dc_dir *d = dir_find(dc, ino);
	if (d)
		return d;
	if (dc->ndirs >= DC_MAX_DIRS)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->ino = ino;
	d->gen = dc->gen_next++;
	d->next = dc->tab[bucket(ino)];
	dc->tab[bucket(ino)] = d;
	dc->ndirs++;
	return d;
}

/* A table of NC slots (a power of two) holding OLD's names (CAP slots;
 * empty and tombstone slots dropped), placed by linear probing; NULL when
 * out of memory (OLD untouched). Both name sets of a directory grow by it. */
static char **names_rehash(char **old, size_t cap, size_t nc)
{
	char **ns = calloc(nc, sizeof(*ns));
	if (!ns)
		return NULL;
	for (size_t i = 0; i < cap; i++) {
		if (!old[i] || old[i] == TOMB)
			continue;
		size_t j = name_hash(old[i]) & (nc - 1);
		while (ns[j])
			j = (j + 1) & (nc - 1);
		ns[j] = old[i];
	}
	return ns;
}

/* Inserts NAME (copied); 0, or -ENOMEM. */
static int set_add(dircache *dc, struct dc_dir *d, const char *name)
{
	if ((d->n + 1) * 4 > d->cap * 3) {
		size_t nc = d->cap ? d->cap * 2 : 16;
		char **ns = names_rehash(d->set, d->cap, nc);
		if (!ns)
			return -ENOMEM;
		free(d->set);
		d->set = ns;
		d->cap = nc;
	}
	size_t j = name_hash(name) & (d->cap - 1);
	while (d->set[j]) {
		if (!strcmp(d->set[j], name))
			return 0;
		j = (j + 1) & (d->cap - 1);
	}
	if (!(d->set[j] = strdup(name)))
		return -ENOMEM;
	d->n++;
	dc->nnames++;
	return 0;
}

/* Moves D's names onto *L (grown as needed) and starts a new generation;
 * on allocation failure the names are dropped from tracking anyway (the
 * caller has nowhere to report it: they are freed, and the directory's
 * entries expire with their timeout). */
static void dir_take(dircache *dc, struct dc_dir *d, struct inval **l, size_t *n, size_t *cap)
{
	for (size_t i = 0; i < d->cap; i++) {
		if (!d->set[i])
			continue;
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 256;
			struct inval *v = realloc(*l, nc * sizeof(*v));
			if (!v) {
				free(d->set[i]);
				continue;
			}
			*l = v;
			*cap = nc;
		}
		(*l)[(*n)++] = (struct inval){d->ino, d->set[i]};
	}
	dc->nnames -= d->n;
	free(d->set);
	d->set = NULL;
	d->n = d->cap = 0;
	d->gen = dc->gen_next++;
	d->own = 0;
	d->force = 0;
	pres_drop(dc, d);
}

/* A changed directory: its names go onto *L (dir_take) when ROOM (the
 * notifier's queue was below DC_NOTIFY_MAX at the poll's start), else
 * they stay tracked for a later poll (THE NOTIFIER): the generation
 * changes as at a take, so no lookup in flight is cached long. */
static void dir_take_or_defer(dircache *dc, struct dc_dir *d, int room, struct inval **l, size_t *n,
                              size_t *cap)
{
	if (room || !d->n) {
		dir_take(dc, d, l, n, cap);
		return;
	}
	d->gen = dc->gen_next++;
	d->own = 0;
	d->force = 1;
	pres_drop(dc, d);
	atomic_fetch_add(&dc->deferred, 1);
}

static uint64_t name_hash(const char *s);

static void pres_drop(dircache *dc, struct dc_dir *d)
{
	for (size_t i = 0; i < d->pres_cap; i++)
		if (d->pres[i] && d->pres[i] != TOMB)
			free(d->pres[i]);
	dc->npres -= d->pres_n;
	free(d->pres);
	d->pres = NULL;
	d->pres_n = d->pres_used = d->pres_cap = 0;
	d->complete = 0;
}

/* Slot of NAME in pres, or -1. */
static long pres_find(const struct dc_dir *d, const char *name)
{
	if (!d->pres_cap)
		return -1;
	size_t j = name_hash(name) & (d->pres_cap - 1);
	while (d->pres[j]) {
		if (d->pres[j] != TOMB && !strcmp(d->pres[j], name))
			return (long)j;
		j = (j + 1) & (d->pres_cap - 1);
	}
	return -1;
}

/* Adds (1) or removes (-1) NAME; on failure the directory stops being
 * complete (it is only an optimisation). */
static void pres_change(dircache *dc, struct dc_dir *d, const char *name, int delta)
{
	long at = pres_find(d, name);
	if (delta < 0) {
		if (at >= 0) {
			free(d->pres[at]);
			d->pres[at] = TOMB;
			d->pres_n--;
			dc->npres--;
		}
		return;
	}
	if (at >= 0)
		return;
	if (d->pres_n >= DC_MAX_PRESENT) {
		pres_drop(dc, d);
		return;
	}
	if ((d->pres_used + 1) * 4 > d->pres_cap * 3) {
		size_t nc = d->pres_cap ? d->pres_cap : 16;
		while ((d->pres_n + 1) * 2 > nc)
			nc *= 2;
		char **ns = names_rehash(d->pres, d->pres_cap, nc);
		if (!ns) {
			pres_drop(dc, d);
			return;
		}
		free(d->pres);
		d->pres = ns;
		d->pres_cap = nc;
		d->pres_used = d->pres_n;
	}
	char *c = strdup(name);
	if (!c) {
		pres_drop(dc, d);
		return;
	}
	size_t j = name_hash(name) & (d->pres_cap - 1);
	while (d->pres[j] && d->pres[j] != TOMB)
		j = (j + 1) & (d->pres_cap - 1);
	if (!d->pres[j])
		d->pres_used++;
	d->pres[j] = c;
	d->pres_n++;
	dc->npres++;
}

static void dir_free(dircache *dc, struct dc_dir *d)
{
	pres_drop(dc, d);
	for (size_t i = 0; i < d->cap; i++)
		free(d->set[i]);
	dc->nnames -= d->n;
	free(d->set);
	free(d);
}

/* Marks NAME in PARENT expired instead of dropping it (FUSE_EXPIRE_ONLY,
 * kernel 6.2 on; libfuse has a call for it from 3.16, Debian ships 3.14,
 * so the notification is written to the session's fd here, one message
 * per writev as the kernel wants). An expired dentry is looked up again at
 * its next use, which is all coherence needs. A dropped one (plain
 * inval_entry: d_invalidate) also unhashes a directory some process
 * stands in, whose getcwd() then fails with ENOENT until a lookup of that
 * name rehashes it (git clone onto the mount hit it right after its own
 * renames). -EINVAL from a kernel that does not know the flag: the caller
 * falls back to dropping. 0 or -errno. */
static int notify_expire_entry(struct fuse_session *se, uint64_t parent, const char *name)
{
	size_t len = strlen(name);
	struct fuse_notify_inval_entry_out arg = {
		.parent = parent, .namelen = (uint32_t)len, .flags = FUSE_EXPIRE_ONLY
	};
	struct fuse_out_header oh = {
		.len = (uint32_t)(sizeof(oh) + sizeof(arg) + len + 1),
		.error = FUSE_NOTIFY_INVAL_ENTRY,
		.unique = 0,
	};
	struct iovec iov[3] = {
		{ &oh, sizeof(oh) }, { &arg, sizeof(arg) }, { (void *)name, len + 1 }
	};
	ssize_t w = writev(fuse_session_fd(se), iov, 3);
	return w < 0 ? -errno : 0;
}

static void tell_kernel(dircache *dc, struct inval *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		/* Not once the session loop stopped: no one answers the
		 * requests that may hold the directory's lock any more. */
		if (dc->se && !atomic_load(&dc->stopping) && !fuse_session_exited(dc->se) &&
		    (dc->drop_entries ||
		    notify_expire_entry(dc->se, l[i].parent, l[i].name) == -EINVAL)) {
			dc->drop_entries = 1;
			fuse_lowlevel_notify_inval_entry(dc->se, l[i].parent, l[i].name,
			                                 strlen(l[i].name));
		}
		free(l[i].name);
	}
	if (n)
		atomic_fetch_add(&dc->invalidations, n);
	free(l);
}

/* Hands L (N names, taken) to the notifier; never waits for the kernel.
 * Out of memory for the batch, the names are dropped from tracking
 * without a notification, as dir_take does (they expire with their
 * timeout). */
static void notify_enqueue(dircache *dc, struct inval *l, size_t n)
{
	struct nbatch *b = n ? malloc(sizeof(*b)) : NULL;
	if (!b) {
		for (size_t i = 0; i < n; i++)
			free(l[i].name);
		free(l);
		return;
	}
	*b = (struct nbatch){NULL, l, n};
	pthread_mutex_lock(&dc->nq_mu);
	*dc->nq_tail = b;
	dc->nq_tail = &b->next;
	dc->nq_names += n;
	pthread_cond_signal(&dc->nq_cv);
	pthread_mutex_unlock(&dc->nq_mu);
}

/* The notifier thread: tells the kernel each queued batch in order; at
 * the stop, it empties the queue (tell_kernel sends nothing then). */
static void *notify_main(void *arg)
{
	dircache *dc = arg;
	pthread_mutex_lock(&dc->nq_mu);
	for (;;) {
		struct nbatch *b = dc->nq_head;
		if (!b) {
			if (dc->nq_stop)
				break;
			pthread_cond_wait(&dc->nq_cv, &dc->nq_mu);
			continue;
		}
		if (!(dc->nq_head = b->next))
			dc->nq_tail = &dc->nq_head;
		pthread_mutex_unlock(&dc->nq_mu);
		tell_kernel(dc, b->l, b->n);
		pthread_mutex_lock(&dc->nq_mu);
		dc->nq_names -= b->n; /* only now: the queue's bound covers the batch told */
		free(b);
	}
	pthread_mutex_unlock(&dc->nq_mu);
	return NULL;
}

uint64_t dircache_begin(dircache *dc, uint64_t parent)
{
	pthread_mutex_lock(&dc->mu);
	struct dc_dir *d = dir_get(dc, parent);
	uint64_t gen = d ? d->gen : UINT64_MAX;
	if (d)
		d->last_ns = clock_mono_ns();
	pthread_mutex_unlock(&dc->mu);
	return gen;
}

/* dircache_note's work on D (dir_get's for PARENT; NULL: nothing kept);
 * dc->mu held. */
static int note_locked(dircache *dc, struct dc_dir *d, const char *name, uint64_t gen)
{
	int ok = 0;
	if (d) {
		d->last_ns = clock_mono_ns();
		if (set_add(dc, d, name) == 0)
			ok = d->gen == gen && !dc->unhealthy;
		if (dc->nnames > DC_MAX_NAMES)
			d->force = 1; /* the next poll drops them: not here, where the
			                 kernel may hold the directory's lock */
	}
	return ok;
}

int dircache_note(dircache *dc, uint64_t parent, const char *name, uint64_t gen)
{
	pthread_mutex_lock(&dc->mu);
	int ok = note_locked(dc, dir_get(dc, parent), name, gen);
	pthread_mutex_unlock(&dc->mu);
	return ok;
}

void dircache_own_begin(dircache *dc)
{
	if (pthread_rwlock_tryrdlock(&dc->own_lock) == 0)
		return;
	/* A poll holds it across a meta read (maybe a round trip): a FUSE
	 * thread in a fast request lets another read meanwhile. */
	block_hint_wait();
	pthread_rwlock_rdlock(&dc->own_lock);
}

void dircache_own_end(dircache *dc, uint64_t parent, const char *name, int delta)
{
	if (delta) {
		pthread_mutex_lock(&dc->mu);
		struct dc_dir *d = dir_find(dc, parent);
		if (d) {
			d->own++;
			if (delta > 0)
				d->adds++;
			if (d->complete)
				pres_change(dc, d, name, delta);
		}
		pthread_mutex_unlock(&dc->mu);
	}
	pthread_rwlock_unlock(&dc->own_lock);
}

void dircache_dir_made(dircache *dc, uint64_t ino)
{
	pthread_mutex_lock(&dc->mu);
	if (!dir_find(dc, ino)) {
		struct dc_dir *d = dir_get(dc, ino);
		if (d) {
			/* A new inode id: no entry change counted yet. A change by
			 * anyone else since shows as a count above 0 + own. */
			d->known = 1;
			d->ver = 0;
			d->complete = 1;
			d->last_ns = clock_mono_ns();
		}
	}
	pthread_mutex_unlock(&dc->mu);
}

void dircache_incomplete(dircache *dc, uint64_t ino)
{
	pthread_mutex_lock(&dc->mu);
	struct dc_dir *d = dir_find(dc, ino);
	if (d)
		pres_drop(dc, d);
	pthread_mutex_unlock(&dc->mu);
}

int dircache_begin_absent(dircache *dc, uint64_t parent, const char *name, int note,
                          uint64_t *gen, int *cache)
{
	pthread_mutex_lock(&dc->mu);
	/* dircache_begin's entry (dir_get), then dircache_absent's test */
	struct dc_dir *d = dir_get(dc, parent);
	*gen = d ? d->gen : UINT64_MAX;
	int absent = d && d->complete && !dc->unhealthy && pres_find(d, name) < 0;
	*cache = 0;
	if (absent && note)
		*cache = note_locked(dc, d, name, *gen); /* sets last_ns, as begin */
	else if (d)
		d->last_ns = clock_mono_ns();
	pthread_mutex_unlock(&dc->mu);
	return absent;
}

int dircache_absent(dircache *dc, uint64_t parent, const char *name)
{
	int absent = 0;
	pthread_mutex_lock(&dc->mu);
	struct dc_dir *d = dir_find(dc, parent);
	if (d && d->complete && !dc->unhealthy)
		absent = pres_find(d, name) < 0;
	pthread_mutex_unlock(&dc->mu);
	return absent;
}

/* The directory's names read page by page (one snapshot each): 1 and
 * *NAMES (N strdup'ed names) with *VER when every page came with the same
 * count, 0 when the directory has more than MAX entries or changed between
 * pages, <0 on error. */
static int list_read(dircache *dc, uint64_t dir, const struct meta_cred *cr, uint32_t max,
                     char ***names, size_t *n, uint64_t *ver)
{
	struct meta_dirent *ents = malloc(DC_LIST_PAGE * sizeof(*ents));
	char **v = NULL;
	size_t k = 0, cap = 0;
	int rc = ents ? 1 : -ENOMEM;
	char cursor[META_NAME_MAX + 1] = "";
	size_t cursor_len = 0;
	for (int page = 0, eof = 0; rc == 1 && !eof; page++) {
		int got = 0;
		uint64_t pv = 0;
		rc = meta_client_dir_list(dc->mc, cr, dir, (struct meta_name){ cursor, cursor_len },
		                          ents, DC_LIST_PAGE, &got, &eof, &pv);
		if (rc < 0)
			break;
		rc = 1;
		if (page == 0)
			*ver = pv;
		/* a page of another snapshot, or more than MAX names */
		if (pv != *ver || k + (size_t)got > max || (!eof && got == 0)) {
			rc = 0;
			break;
		}
		if (k + (size_t)got > cap) {
			size_t nc = cap ? cap : 64;
			while (nc < k + (size_t)got)
				nc *= 2;
			char **nv = realloc(v, nc * sizeof(*nv));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			v = nv;
			cap = nc;
		}
		for (int i = 0; i < got; i++) {
			/* a name the kernel could not look up is no entry */
			if (ents[i].name_len == 0 || memchr(ents[i].name, '/', ents[i].name_len))
				continue;
			if (!(v[k] = strdup(ents[i].name))) {
				rc = -ENOMEM;
				break;
			}
			k++;
		}
		if (got) {
			cursor_len = ents[got - 1].name_len;
			memcpy(cursor, ents[got - 1].name, cursor_len);
		}
	}
	free(ents);
	if (rc != 1) {
		for (size_t i = 0; i < k; i++)
			free(v[i]);
		free(v);
		return rc;
	}
	*names = v;
	*n = k;
	return 1;
}

int dircache_list(dircache *dc, uint64_t dir, const struct meta_cred *cr)
{
	if (!dc || !dc->list_max || atomic_load(&dc->stopping))
		return 0;
	uint64_t now = clock_mono_ns();
	pthread_mutex_lock(&dc->mu);
	struct dc_dir *d = dir_find(dc, dir);
	int go = d && !d->complete && d->adds && !dc->unhealthy && d->list_after_ns <= now &&
	         dc->npres < DC_LIST_BUDGET;
	if (d && go)
		d->list_after_ns = now + DC_LIST_RETRY_NS;
	int done = d && d->complete;
	pthread_mutex_unlock(&dc->mu);
	if (!go)
		return done;
	/* As a poll: no poll between the listing's snapshot and its use
	 * (it would count against a state this has not installed yet), and
	 * no own change in flight, so every own change counted so far is in
	 * the listing and none is missed from it. */
	if (pthread_mutex_trylock(&dc->poll_mu)) {
		/* not waited for: the poll may be telling the kernel about this
		 * very directory, whose lock the caller's lookup holds. The
		 * next lookup of an absent name tries again. */
		pthread_mutex_lock(&dc->mu);
		if ((d = dir_find(dc, dir)))
			d->list_after_ns = 0;
		pthread_mutex_unlock(&dc->mu);
		return 0;
	}
	pthread_rwlock_wrlock(&dc->own_lock);
	char **names = NULL;
	size_t n = 0;
	uint64_t ver = 0;
	int rc = list_read(dc, dir, cr, dc->list_max, &names, &n, &ver);
	atomic_fetch_add(&dc->lists, 1);
	pthread_mutex_lock(&dc->mu);
	d = dir_find(dc, dir);
	if (rc == 0 && d)
		d->list_after_ns = now + DC_IDLE_NS; /* too big or busy: leave it */
	/* Names the kernel may hold are right only if nobody else changed the
	 * directory since the poll that vouched for them: the count must be
	 * the poll's plus this mount's own changes. A directory no poll read
	 * yet has its names expire as its first poll would have had them
	 * (the next poll tells the kernel) and starts a new generation, as a
	 * lookup that read meta before the listing may have missed a change
	 * the count already holds; the listing's count is its first. */
	if (rc == 1 && d && !d->complete && !dc->unhealthy && !d->force &&
	    (!d->known || ver == d->ver + d->own) && dc->npres + n <= DC_LIST_BUDGET) {
		if (!d->known) {
			dir_take(dc, d, &dc->pend, &dc->npend, &dc->pendcap);
			d->known = 1;
			d->ver = ver;
		}
		d->complete = 1;
		for (size_t i = 0; i < n && d->complete; i++)
			pres_change(dc, d, names[i], 1);
		d->last_ns = clock_mono_ns();
	}
	done = d && d->complete;
	pthread_mutex_unlock(&dc->mu);
	pthread_rwlock_unlock(&dc->own_lock);
	pthread_mutex_unlock(&dc->poll_mu);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (rc < 0 && rc != -CFS_EBADMSG_TYPE && rc != -EACCES)
		LOG_DEBUG("fuse", "listing dir=%llu failed: %s", (unsigned long long)dir,
		          cfs_strerror(rc));
	if (rc == -CFS_EBADMSG_TYPE) {
		LOG_NOTICE("fuse", "meta does not know DIRLIST: directory listing off");
		dc->list_max = 0;
		dc->old_meta = 1;
	}
	return done;
}

int dircache_unchanged(dircache *dc, uint64_t dir, uint64_t gen)
{
	if (!dc || atomic_load(&dc->old_meta))
		return 0;
	pthread_mutex_lock(&dc->mu);
	struct dc_dir *d = dir_find(dc, dir);
	int ok = d && d->known && d->gen == gen && !dc->unhealthy;
	pthread_mutex_unlock(&dc->mu);
	return ok;
}

int dircache_healthy(dircache *dc)
{
	if (!dc)
		return 0;
	return !atomic_load_explicit(&dc->unhealthy, memory_order_relaxed);
}

struct snap {
	uint64_t ino, own, gen, ver;
};

/* LOCKED: the caller took poll_mu (released here either way). */
static int poll_once(dircache *dc, int locked)
{
	struct snap *s = NULL;
	struct inval *l = NULL;
	size_t n = 0, nl = 0, lcap = 0;
	int rc = 0;
	uint64_t now = clock_mono_ns();

	if (!locked)
		pthread_mutex_lock(&dc->poll_mu);
	/* Only the notifier shrinks the queue: room now is room later. */
	pthread_mutex_lock(&dc->nq_mu);
	int room = dc->nq_names < DC_NOTIFY_MAX;
	pthread_mutex_unlock(&dc->nq_mu);
	pthread_rwlock_wrlock(&dc->own_lock);
	pthread_mutex_lock(&dc->mu);
	/* Directories idle past every timeout handed out: the kernel dropped
	 * their names by itself. */
	for (size_t b = 0; b < DC_BUCKETS; b++) {
		struct dc_dir **pp = &dc->tab[b];
		while (*pp) {
			struct dc_dir *d = *pp;
			if (d->last_ns + dc->ttl_ns + 1000000000ull < now) {
				*pp = d->next;
				dc->ndirs--;
				dir_free(dc, d);
			} else if (d->last_ns + DC_IDLE_NS < now && (room || !d->n)) {
				dir_take(dc, d, &l, &nl, &lcap);
				*pp = d->next;
				dc->ndirs--;
				dir_free(dc, d);
			} else {
				pp = &d->next;
			}
		}
	}
	if (dc->ndirs && !(s = malloc(dc->ndirs * sizeof(*s))))
		rc = -ENOMEM;
	for (size_t b = 0; rc == 0 && b < DC_BUCKETS; b++)
		for (struct dc_dir *d = dc->tab[b]; d; d = d->next)
			s[n++] = (struct snap){d->ino, d->own, d->gen, 0};
	pthread_mutex_unlock(&dc->mu);

	uint64_t *ino = NULL, *ver = NULL;
	if (rc == 0 && n) {
		ino = malloc(DC_BATCH * sizeof(*ino));
		ver = malloc(DC_BATCH * sizeof(*ver));
		if (!ino || !ver)
			rc = -ENOMEM;
	}
	for (size_t i = 0; rc == 0 && i < n; i += DC_BATCH) {
		size_t k = n - i < DC_BATCH ? n - i : DC_BATCH;
		for (size_t j = 0; j < k; j++)
			ino[j] = s[i + j].ino;
		rc = meta_client_dir_versions(dc->mc, ino, k, ver);
		for (size_t j = 0; rc == 0 && j < k; j++)
			s[i + j].ver = ver[j];
	}
	pthread_rwlock_unlock(&dc->own_lock);
	free(ino);
	free(ver);
	atomic_fetch_add(&dc->polls, 1);

	pthread_mutex_lock(&dc->mu);
	if (rc < 0) {
		atomic_fetch_add(&dc->poll_failures, 1);
		if (!dc->fail_since_ns)
			dc->fail_since_ns = now;
		if (now - dc->fail_since_ns >= DC_FAIL_NS) {
			if (!dc->unhealthy)
				LOG_WARN("fuse",
				         "directory-count polls failing (%s): names are "
				         "no longer cached long",
				         cfs_strerror(rc));
			dc->unhealthy = 1;
			for (size_t b = 0; b < DC_BUCKETS; b++)
				for (struct dc_dir *d = dc->tab[b]; d; d = d->next) {
					dir_take_or_defer(dc, d, room, &l, &nl, &lcap);
					d->known = 0;
				}
		}
	} else {
		dc->fail_since_ns = 0;
		dc->unhealthy = 0;
		for (size_t i = 0; i < n; i++) {
			struct dc_dir *d = dir_find(dc, s[i].ino);
			if (!d)
				continue;
			if (d->known && d->gen == s[i].gen && !d->force &&
			    s[i].ver == d->ver + s[i].own) {
				d->ver = s[i].ver;
				d->own -= s[i].own;
			} else {
				dir_take_or_defer(dc, d, room, &l, &nl, &lcap);
				d->ver = s[i].ver;
				d->known = 1;
			}
		}
	}
	for (size_t i = 0; i < dc->npend; i++) {
		if (nl == lcap) {
			size_t nc = lcap ? lcap * 2 : 256;
			struct inval *v = realloc(l, nc * sizeof(*v));
			if (!v) {
				free(dc->pend[i].name);
				continue;
			}
			l = v;
			lcap = nc;
		}
		l[nl++] = dc->pend[i];
	}
	dc->npend = 0;
	pthread_mutex_unlock(&dc->mu);
	notify_enqueue(dc, l, nl);
	pthread_mutex_unlock(&dc->poll_mu);
	free(s);
	return rc;
}

int dircache_sync(dircache *dc)
{
	if (!dc || atomic_load(&dc->stopping))
		return 0;
	/* Bounded: a poll waits on meta (RPC timeouts) but never on the
	 * kernel (THE NOTIFIER); still, a worker stuck here (a mutex wait is
	 * no cancellation point) would keep the session loop from joining
	 * it. */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += DC_SYNC_WAIT_S;
	int e = pthread_mutex_timedlock(&dc->poll_mu, &ts);
	if (e)
		return -e;
	return poll_once(dc, 1);
}

void dircache_quiesce(dircache *dc)
{
	if (dc)
		atomic_store(&dc->stopping, 1);
}

static void *poll_main(void *arg)
{
	dircache *dc = arg;
	pthread_mutex_lock(&dc->stop_mu);
	while (!dc->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)dc->poll_ms * 1000000ull;
		ts.tv_sec += (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		pthread_cond_timedwait(&dc->stop_cv, &dc->stop_mu, &ts);
		if (dc->stop)
			break;
		pthread_mutex_unlock(&dc->stop_mu);
		poll_once(dc, 0);
		pthread_mutex_lock(&dc->stop_mu);
	}
	pthread_mutex_unlock(&dc->stop_mu);
	return NULL;
}

/* The end of DC once its threads are gone and its tables empty: the
 * locks dircache_new made before its threads, and DC itself. */
static void dc_destroy(dircache *dc)
{
	pthread_rwlock_destroy(&dc->own_lock);
	pthread_mutex_destroy(&dc->mu);
	pthread_mutex_destroy(&dc->poll_mu);
	pthread_mutex_destroy(&dc->stop_mu);
	pthread_cond_destroy(&dc->stop_cv);
	pthread_mutex_destroy(&dc->nq_mu);
	pthread_cond_destroy(&dc->nq_cv);
	free(dc);
}

int dircache_new(meta_client *mc, struct fuse_session *se, uint32_t poll_ms, uint64_t ttl_ns,
                 dircache **out)
{
	dircache *dc = calloc(1, sizeof(*dc));
	*out = NULL;
	if (!dc)
		return -ENOMEM;
	dc->mc = mc;
	dc->se = se;
	dc->poll_ms = poll_ms ? poll_ms : 100;
	dc->ttl_ns = ttl_ns;
	dc->gen_next = 1;
	dc->nq_tail = &dc->nq_head;
	const char *lm = getenv("CFS_DIRCACHE_LIST_MAX");
	dc->list_max = lm && *lm ? (uint32_t)strtoul(lm, NULL, 10) : DC_LIST_MAX_DEFAULT;
	pthread_mutex_init(&dc->mu, NULL);
	pthread_mutex_init(&dc->poll_mu, NULL);
	pthread_mutex_init(&dc->stop_mu, NULL);
	pthread_cond_init(&dc->stop_cv, NULL);
	pthread_mutex_init(&dc->nq_mu, NULL);
	pthread_cond_init(&dc->nq_cv, NULL);
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	/* glibc prefers readers by default: a busy mount would starve polls */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&dc->own_lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	int rc = pthread_create(&dc->nth, NULL, notify_main, dc);
	if (rc == 0) {
		rc = pthread_create(&dc->th, NULL, poll_main, dc);
		if (rc) {
			pthread_mutex_lock(&dc->nq_mu);
			dc->nq_stop = 1;
			pthread_cond_signal(&dc->nq_cv);
			pthread_mutex_unlock(&dc->nq_mu);
			pthread_join(dc->nth, NULL);
		}
	}
	if (rc) {
		dc_destroy(dc);
		return -rc;
	}
	*out = dc;
	return 0;
}

int dircache_stop(dircache *dc, uint32_t wait_ms)
{
	if (!dc || dc->joined)
		return 0;
	atomic_store(&dc->stopping, 1);
	pthread_mutex_lock(&dc->stop_mu);
	dc->stop = 1;
	pthread_cond_signal(&dc->stop_cv);
	pthread_mutex_unlock(&dc->stop_mu);
	pthread_mutex_lock(&dc->nq_mu);
	dc->nq_stop = 1;
	pthread_cond_signal(&dc->nq_cv);
	pthread_mutex_unlock(&dc->nq_mu);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)wait_ms * 1000000ull;
	ts.tv_sec += (time_t)(ns / 1000000000ull);
	ts.tv_nsec = (long)(ns % 1000000000ull);
	/* The poll first: it may still queue a batch, which the notifier
	 * (stopping) then frees unsent. */
	int rc = 0;
	if (!dc->poll_joined && (rc = pthread_timedjoin_np(dc->th, NULL, &ts)) == 0)
		dc->poll_joined = 1;
	int rc2 = 0;
	if (!dc->notify_joined && (rc2 = pthread_timedjoin_np(dc->nth, NULL, &ts)) == 0)
		dc->notify_joined = 1;
	if (rc || rc2)
		return -(rc ? rc : rc2);
	dc->joined = 1;
	return 0;
}

void dircache_free(dircache *dc)
{
	if (!dc)
		return;
	if (!dc->joined) {
		dircache_stop(dc, 0);
		if (!dc->poll_joined)
			pthread_join(dc->th, NULL);
		if (!dc->notify_joined)
			pthread_join(dc->nth, NULL);
	}
	/* A batch queued after the notifier left (the poll was joined last). */
	while (dc->nq_head) {
		struct nbatch *b = dc->nq_head;
		dc->nq_head = b->next;
		for (size_t i = 0; i < b->n; i++)
			free(b->l[i].name);
		free(b->l);
		free(b);
	}
	for (size_t b = 0; b < DC_BUCKETS; b++)
		while (dc->tab[b]) {
			struct dc_dir *d = dc->tab[b];
			dc->tab[b] = d->next;
			dir_free(dc, d);
		}
	for (size_t i = 0; i < dc->npend; i++)
		free(dc->pend[i].name);
	free(dc->pend);
	dc_destroy(dc);
}

void dircache_get_stats(dircache *dc, struct dircache_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!dc)
		return;
	pthread_mutex_lock(&dc->mu);
	out->dirs = dc->ndirs;
	out->names = dc->nnames;
	pthread_mutex_unlock(&dc->mu);
	out->polls = atomic_load(&dc->polls);
	out->poll_failures = atomic_load(&dc->poll_failures);
	out->invalidations = atomic_load(&dc->invalidations);
	out->deferred = atomic_load(&dc->deferred);
	out->lists = atomic_load(&dc->lists);
}
