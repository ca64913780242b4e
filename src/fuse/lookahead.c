/* lookahead.c - batches of directory entries with their inodes, answering
 * lookups (lookahead.h).
 *
 * HOW IT WORKS. A fixed table of LOOKAHEAD_SLOTS slots, one directory per
 * slot (hashed by inode). A slot keeps the directory's last missed name
 * (to see ascending runs) and at most one batch: the entries meta returned
 * from the name that started it, in name byte order (strcmp order: names
 * hold no NUL), so a lookup is a binary search. Each entry keeps the part
 * of the inode record the mount shows (struct meta_inode up to the layout,
 * plus chunk size and rdev), not the 5 KiB record.
 */
#include "fuse/lookahead.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

#define LA_RUN_NS 2000000000ull /* misses further apart do not make a run */
/* a directory a batch answered this recently is being walked (lookahead_want) */
#define LA_SCAN_NS 1000000000ull

#define LA_HDR offsetof(struct meta_inode, layout)

_Static_assert(LOOKAHEAD_SLOTS == 1024, "slot_of takes the top 10 bits of the hash");

/* Names shorter than this are kept in the entry too: the lookup that
 * continues a walk compares with the entry it is about to answer from
 * without a second wait for memory (see lookahead_get). */
#define LA_SNAME 24

struct la_ent {
	char sname[LA_SNAME]; /* the name when shorter than LA_SNAME, else "" */
	char *name; /* in the batch's arena */
	uint8_t hdr[LA_HDR]; /* struct meta_inode up to the layout */
	uint32_t chunk_size;
	uint64_t rdev;
	uint8_t *bytes; /* an inline file's bytes (LOOKUP_PLUSD), or NULL */
	uint32_t nbytes;
	struct meta_layout *lay; /* with bytes: the whole layout (an open needs it) */
	/* This mount unlinked the name (lookahead_unlinked): the entry stays
	 * in place for the binary search and answers as absent. */
	int gone;
};

struct lookahead_batch {
	struct la_ent *ents;
	size_t n, cap;
	char *arena;
	size_t alen, acap;
	uint64_t gen, epoch, read_ns;
	uint64_t seq; /* the table's change count when the fetch started */
	int eof;
	size_t dbytes; /* inline bytes held by the entries */
	int data; /* fetched with inline bytes (LOOKUP_PLUSD) */
	uint32_t uid, gid; /* whose read permission chose the bytes */
	int shared; /* holds a directory or a file with more than one link */
};

struct la_slot {
	/* What lookahead_get reads, in one cache line: when lookups go
	 * round many directories (the peer job's stats over 100) each of
	 * the slot, the batch and the entry was a wait for memory, one
	 * after the other. The batch's fixed fields are copied here at put
	 * (entries are never moved after it: lookahead_unlinked marks). */
	uint64_t parent; /* 0: empty */
	struct lookahead_batch *b;
	/* The batch after B, fetched ahead (lookahead_refill): it answers
	 * only names B does not hold, and then takes B's place. */
	struct lookahead_batch *nb;
	int refilled; /* B set off its refill (once per batch) */
	int ahead_refill; /* AHEAD below is a refill's, not a walk-ahead's */
	const struct la_ent *ents; /* b's */
	size_t n;                  /* b's */
	uint32_t next; /* the entry after the last one lookahead_get answered */
	/* the batch came from a walk-ahead fetch and has not answered yet */
	uint32_t ahead_batch;
	uint64_t epoch, read_ns, gen; /* b's */
	uint64_t last_ns;
	unsigned nfetch; /* fetches made for the current run of misses */
	/* A walk-ahead fetch of this directory is queued or running
	 * (lookahead_walk_ahead): a miss here waits for it (lookahead_wait). */
	int ahead;
	uint64_t walk_ns; /* a subdirectory's first miss fetched at once (a walk) */
	char last[META_NAME_MAX + 1]; /* last missed name ("": none) */
};

/* A directory a batch answered (lookahead_dir_seen): where its entry is. */
struct la_dir {
	uint64_t ino; /* 0: empty */
	uint64_t parent;
	uint64_t seen_ns;
	char name[META_NAME_MAX + 1];
};

struct lookahead {
	pthread_mutex_t mu;
	pthread_cond_t ahead_cv; /* a walk-ahead fetch ended */
	uint64_t ttl_ns;
	uint64_t epoch; /* batches of another epoch are dead */
	uint64_t seq;   /* a fetch started at another seq is not kept */
	size_t nshared; /* batches in slots with SHARED set */
	/* which slots hold those: an unlink looks at them only, not at every
	 * slot (a walk over directories keeps its parent's batch, which
	 * holds directories, for the whole of an rm -r after it) */
	uint64_t shared_map[LOOKAHEAD_SLOTS / 64];
	int off;
	size_t dbytes; /* inline bytes held by the batches in slots */
	struct la_slot slots[LOOKAHEAD_SLOTS];
	struct la_dir dirs[LOOKAHEAD_SLOTS]; /* hashed by the directory's inode */
};

int lookahead_new(uint64_t ttl_ns, lookahead **out)
{
	lookahead *la = calloc(1, sizeof(*la));
	if (!la)
		return -ENOMEM;
	pthread_mutex_init(&la->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&la->ahead_cv, &ca);
	pthread_condattr_destroy(&ca);
	la->ttl_ns = ttl_ns;
	la->epoch = 1;
	la->seq = 1;
	*out = la;
	return 0;
}

static void ents_bytes_free(struct lookahead_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->ents[i].bytes);
		free(b->ents[i].lay);
		b->ents[i].bytes = NULL;
		b->ents[i].lay = NULL;
	}
	b->dbytes = 0;
}

void lookahead_batch_free(struct lookahead_batch *b)
{
	if (!b)
		return;
	ents_bytes_free(b);
	free(b->ents);
	free(b->arena);
	free(b);
}

void lookahead_free(lookahead *la)
{
	if (!la)
		return;
	for (size_t i = 0; i < LOOKAHEAD_SLOTS; i++) {
		lookahead_batch_free(la->slots[i].b);
		lookahead_batch_free(la->slots[i].nb);
	}
	pthread_cond_destroy(&la->ahead_cv);
	pthread_mutex_destroy(&la->mu);
	free(la);
}

static struct la_slot *slot_of(lookahead *la, uint64_t parent)
{
	return &la->slots[(parent * 0x9E3779B97F4A7C15ull) >> 54]; /* 10 bits: 1024 slots */
}

/* Frees S's batch, if any, and its bytes' share of the total. mu held. */
static void slot_clear(lookahead *la, struct la_slot *s)
{
	if (!s->b)
		return;
	la->dbytes -= s->b->dbytes;
	if (s->b->shared) {
		size_t i = (size_t)(s - la->slots);
		la->nshared--;
		la->shared_map[i / 64] &= ~(1ull << (i % 64));
	}
	lookahead_batch_free(s->b);
	s->b = NULL;
}

/* Frees S's next batch, if any. mu held. */
static void next_clear(lookahead *la, struct la_slot *s)
{
	if (!s->nb)
		return;
	la->dbytes -= s->nb->dbytes;
	lookahead_batch_free(s->nb);
	s->nb = NULL;
}

/* S now serves directory PARENT (it served another): its state goes,
 * and whoever waits for the other's walk-ahead fetch stops. mu held. */
static void slot_take(lookahead *la, struct la_slot *s, uint64_t parent)
{
	slot_clear(la, s);
	next_clear(la, s);
	if (s->ahead)
		pthread_cond_broadcast(&la->ahead_cv);
	s->parent = parent;
	s->last[0] = 0;
	s->nfetch = 0;
	s->ahead = 0;
	s->ahead_refill = 0;
	s->ahead_batch = 0;
	s->walk_ns = 0;
}

static struct la_dir *dir_of(lookahead *la, uint64_t ino)
{
	return &la->dirs[(ino * 0x9E3779B97F4A7C15ull) >> 54];
}

void lookahead_changed(lookahead *la)
{
	pthread_mutex_lock(&la->mu);
	la->epoch++; /* batches are checked (and freed) lazily */
	la->seq++;
	pthread_mutex_unlock(&la->mu);
}

uint64_t lookahead_epoch(lookahead *la)
{
	pthread_mutex_lock(&la->mu);
	uint64_t e = la->seq;
	pthread_mutex_unlock(&la->mu);
	return e;
}

void lookahead_disable(lookahead *la)
{
	pthread_mutex_lock(&la->mu);
	la->off = 1;
	pthread_mutex_unlock(&la->mu);
}

/* 1 when S's batch may still answer at NOW; else frees it. mu held. */
static int batch_live(lookahead *la, struct la_slot *s, uint64_t now)
{
	if (!s->b)
		return 0;
	if (s->epoch == la->epoch && now - s->read_ns < la->ttl_ns)
		return 1;
	slot_clear(la, s);
	return 0;
}

/* B (sealed, its fields set, its bytes counted in la->dbytes) becomes
 * S's batch in place of the one S had. mu held. */
static void slot_install(lookahead *la, struct la_slot *s, struct lookahead_batch *b)
{
	slot_clear(la, s);
	s->b = b;
	s->ents = b->ents;
	s->n = b->n;
	s->next = 0;
	s->refilled = 0;
	s->epoch = b->epoch;
	s->read_ns = b->read_ns;
	s->gen = b->gen;
	if (b->shared) {
		size_t i = (size_t)(s - la->slots);
		la->nshared++;
		la->shared_map[i / 64] |= 1ull << (i % 64);
	}
}

static const struct la_ent *batch_search(const struct lookahead_batch *b, const char *name)
{
	size_t lo = 0, hi = b->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, b->ents[mid].name);
		if (c == 0)
			return &b->ents[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static void ent_inode(const struct la_ent *e, struct meta_inode *in)
{
	memcpy(in, e->hdr, LA_HDR);
	in->layout.chunk_size = e->chunk_size;
	in->layout.nchains = 0;
	in->target_len = 0;
	in->target[0] = 0;
	in->rdev = e->rdev;
}

/* NAME's entry in S's next batch when that may answer (it is live by
 * the rules of the current one, and nothing changed on this mount since
 * its fetch started: an unlink B survived may have gone into it unseen):
 * the next batch then takes the current one's place. Else NULL (a dead
 * next batch is freed). mu held. */
static const struct la_ent *next_find(lookahead *la, struct la_slot *s, const char *name,
                                      uint64_t now)
{
	struct lookahead_batch *nb = s->nb;
	if (!nb)
		return NULL;
	if (nb->epoch != la->epoch || nb->seq != la->seq || now - nb->read_ns >= la->ttl_ns) {
		next_clear(la, s);
		return NULL;
	}
	const struct la_ent *e = batch_search(nb, name);
	if (!e || e->gone)
		return NULL;
	s->nb = NULL;
	slot_install(la, s, nb);
	return e;
}

int lookahead_get(lookahead *la, uint64_t parent, const char *name, struct meta_inode *in,
                  uint64_t *gen, uint64_t *read_ns)
{
	int hit = 0;
	uint64_t now = clock_mono_ns();
	pthread_mutex_lock(&la->mu);
	struct la_slot *s = slot_of(la, parent);
	if (s->parent == parent) {
		/* A walk asks for the names in order: the entry after the last
		 * answer first, one compare where the binary search touches
		 * eight entries - cold ones when walks of many directories
		 * interleave (the peer job's stats over 100). */
		const struct la_ent *e = NULL;
		if (batch_live(la, s, now)) {
			if (s->next < s->n) {
				const struct la_ent *c = &s->ents[s->next];
				if (!strcmp(name, c->sname[0] ? c->sname : c->name))
					e = c;
			}
			if (!e)
				e = batch_search(s->b, name);
		}
		if (!e || e->gone)
			e = next_find(la, s, name, now);
		if (e && !e->gone) {
			if (s->ahead_batch) {
				/* the walk reached a directory fetched ahead: it goes
				 * on, as when such a first miss fetched (want) */
				s->ahead_batch = 0;
				struct la_dir *d = dir_of(la, parent);
				struct la_slot *ps = slot_of(la, d->parent);
				if (d->ino == parent && ps->parent == d->parent)
					ps->walk_ns = now;
			}
			s->next = (uint32_t)(e - s->ents) + 1;
			ent_inode(e, in);
			*gen = s->gen;
			*read_ns = s->read_ns;
			hit = 1;
		}
	}
	pthread_mutex_unlock(&la->mu);
	return hit;
}

void lookahead_drop(lookahead *la, uint64_t parent)
{
	pthread_mutex_lock(&la->mu);
	struct la_slot *s = slot_of(la, parent);
	if (s->parent == parent) {
		slot_clear(la, s);
		next_clear(la, s);
	}
	pthread_mutex_unlock(&la->mu);
}

int lookahead_want(lookahead *la, uint64_t parent, const char *name)
{
	int want = 0;
	uint64_t now = clock_mono_ns();
	size_t nl = strlen(name);
	if (nl == 0 || nl > META_NAME_MAX)
		return 0;
	pthread_mutex_lock(&la->mu);
	struct la_slot *s = slot_of(la, parent);
	if (s->parent != parent)
		slot_take(la, s, parent);
	int run = s->last[0] && now - s->last_ns < LA_RUN_NS;
	int walk = 0;
	if (!la->off && run && strcmp(name, s->last) > 0) {
		want = 1;
		/* a live batch that spans NAME already said it is absent (one
		 * read further on, as the end of an earlier walk, does not) */
		if (batch_live(la, s, now) && s->b->n && strcmp(name, s->b->ents[0].name) > 0 &&
		    (strcmp(name, s->b->ents[s->b->n - 1].name) < 0 || s->b->eof))
			want = 0;
	} else {
		/* The first miss of a run in a directory that its parent's
		 * batch answered a moment ago: a walk over directories (stat
		 * of d1/f, d2/f, ..., find, du, ls -lR) - fetch at once rather
		 * than at the second miss, one round trip less per directory.
		 * Once per time the parent's batch answers the directory, so
		 * lookups at random in it do not fetch each. */
		struct la_dir *d = dir_of(la, parent);
		if (!la->off && d->ino == parent && d->seen_ns && now - d->seen_ns < LA_SCAN_NS) {
			want = walk = 1;
			d->seen_ns = 0;
			struct la_slot *ps = slot_of(la, d->parent);
			if (ps->parent == d->parent)
				ps->walk_ns = now;
		}
		s->nfetch = 0; /* a new run */
	}
	memcpy(s->last, name, nl + 1);
	s->last_ns = now;
	int count = 0;
	if (want) {
		/* a run that goes on past one batch is a scan of the whole
		 * directory: the next batches are as large as meta allows. So
		 * is a walk's first: a walk over directories (the peer job's
		 * 200 files in each of 100, find, du) reads every name of each,
		 * and one fetch of up to 256 serves a directory that two (128,
		 * then the rest) did - a third of the walk's meta requests. */
		count = s->nfetch || walk ? LOOKAHEAD_BATCH_MAX : LOOKAHEAD_BATCH;
		s->nfetch++;
	}
	pthread_mutex_unlock(&la->mu);
	return count;
}

void lookahead_dir_seen(lookahead *la, uint64_t parent, const char *name, uint64_t ino)
{
	size_t nl = strlen(name);
	if (nl == 0 || nl > META_NAME_MAX)
		return;
	uint64_t now = clock_mono_ns();
	pthread_mutex_lock(&la->mu);
	struct la_dir *d = dir_of(la, ino);
	d->ino = ino;
	d->parent = parent;
	d->seen_ns = now;
	memcpy(d->name, name, nl + 1);
	pthread_mutex_unlock(&la->mu);
}

int lookahead_dir_where(lookahead *la, uint64_t ino, uint64_t *parent, char *name)
{
	int found = 0;
	pthread_mutex_lock(&la->mu);
	struct la_dir *d = dir_of(la, ino);
	if (d->ino == ino) {
		*parent = d->parent;
		memcpy(name, d->name, strlen(d->name) + 1);
		found = 1;
	}
	pthread_mutex_unlock(&la->mu);
	return found;
}

struct lookahead_batch *lookahead_batch_new(void)
{
	return calloc(1, sizeof(struct lookahead_batch));
}

int lookahead_batch_add(void *batch, const struct meta_dirent *de, const struct meta_inode *in)
{
	struct lookahead_batch *b = batch;
	if (!de) {
		ents_bytes_free(b);
		b->n = 0;
		b->alen = 0;
		b->data = 0;
		return 0;
	}
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		struct la_ent *e = realloc(b->ents, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		b->ents = e;
		b->cap = cap;
	}
	size_t need = (size_t)de->name_len + 1;
	if (b->alen + need > b->acap) {
		size_t cap = b->acap ? 2 * b->acap : 8192;
		while (cap < b->alen + need)
			cap *= 2;
		char *a = realloc(b->arena, cap);
		if (!a)
			return -ENOMEM;
		/* names are kept as offsets until the batch is complete */
		b->arena = a;
		b->acap = cap;
	}
	memcpy(b->arena + b->alen, de->name, need);
	struct la_ent *e = &b->ents[b->n++];
	if (need <= LA_SNAME)
		memcpy(e->sname, de->name, need);
	else
		e->sname[0] = 0;
	e->name = (char *)(uintptr_t)b->alen;
	b->alen += need;
	memcpy(e->hdr, in, LA_HDR);
	e->chunk_size = in->has_layout ? in->layout.chunk_size : 0;
	e->rdev = in->rdev;
	e->bytes = NULL;
	e->nbytes = 0;
	e->lay = NULL;
	e->gone = 0;
	if (in->type == META_T_DIR || in->nlink > 1)
		b->shared = 1;
	return 0;
}

int lookahead_batch_add_idata(void *batch, const struct meta_dirent *de,
                              const struct meta_inode *in, const struct meta_idata_out *d)
{
	struct lookahead_batch *b = batch;
	int rc = lookahead_batch_add(batch, de, in);
	if (rc || !de || !d)
		return rc;
	struct la_ent *e = &b->ents[b->n - 1];
	if (!in->has_layout)
		return 0;
	e->bytes = malloc(d->len ? d->len : 1);
	e->lay = malloc(sizeof(*e->lay));
	if (!e->bytes || !e->lay) {
		free(e->bytes);
		free(e->lay);
		e->bytes = NULL;
		e->lay = NULL;
		return 0; /* the entry still answers lookups */
	}
	*e->lay = in->layout;
	b->data = 1;
	if (d->len)
		memcpy(e->bytes, d->buf, d->len);
	e->nbytes = d->len;
	b->dbytes += d->len;
	return 0;
}

void lookahead_batch_set_cred(struct lookahead_batch *b, uint32_t uid, uint32_t gid)
{
	b->uid = uid;
	b->gid = gid;
}

int lookahead_data_room(lookahead *la)
{
	pthread_mutex_lock(&la->mu);
	int room = la->dbytes < LOOKAHEAD_DATA_MAX;
	pthread_mutex_unlock(&la->mu);
	return room;
}

int lookahead_get_idata(lookahead *la, uint64_t parent, const char *name, uint64_t ino,
                        uint64_t max_age_ns, struct meta_inode *in, void *buf, uint32_t *len,
                        uint64_t *gen, uint64_t *read_ns, uint32_t *uid, uint32_t *gid)
{
	int hit = 0;
	uint64_t now = clock_mono_ns();
	pthread_mutex_lock(&la->mu);
	struct la_slot *s = slot_of(la, parent);
	if (s->parent == parent && batch_live(la, s, now) && now - s->b->read_ns < max_age_ns) {
		const struct la_ent *e = batch_search(s->b, name);
		if (e && !e->gone && e->bytes && e->nbytes <= META_IDATA_MAX) {
			ent_inode(e, in);
			in->layout = *e->lay;
			if (in->ino == ino) {
				if (e->nbytes)
					memcpy(buf, e->bytes, e->nbytes);
				*len = e->nbytes;
				/* handed over: the open keeps them (in the page
				 * cache) for as long as they may be read; held
				 * here too they took room a refill's bytes need */
				struct la_ent *w = (struct la_ent *)e;
				s->b->dbytes -= w->nbytes;
				la->dbytes -= w->nbytes;
				free(w->bytes);
				free(w->lay);
				w->bytes = NULL;
				w->lay = NULL;
				w->nbytes = 0;
				*gen = s->b->gen;
				*read_ns = s->b->read_ns;
				*uid = s->b->uid;
				*gid = s->b->gid;
				hit = 1;
			}
		}
	}
	pthread_mutex_unlock(&la->mu);
	return hit;
}

/* Turns the name offsets into pointers once the arena stopped moving. */
static void batch_seal(struct lookahead_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		b->ents[i].name = b->arena + (uintptr_t)b->ents[i].name;
}

int lookahead_batch_find(const struct lookahead_batch *b, const char *name, struct meta_inode *in)
{
	/* before put: names are still offsets */
	for (size_t i = 0; i < b->n; i++) {
		if (!strcmp(b->arena + (uintptr_t)b->ents[i].name, name)) {
			ent_inode(&b->ents[i], in);
			return 1;
		}
	}
	return 0;
}

/* B's fetch for PARENT ended: records what put and put_next keep of it,
 * then takes mu and returns PARENT's slot (which may serve another
 * directory); the caller keeps B or frees it, and unlocks. */
static struct la_slot *put_begin(lookahead *la, uint64_t parent, struct lookahead_batch *b,
                                 uint64_t gen, uint64_t epoch, uint64_t read_ns, int eof)
{
	batch_seal(b);
	b->gen = gen;
	b->read_ns = read_ns;
	b->eof = eof;
	b->seq = epoch;
	pthread_mutex_lock(&la->mu);
	b->epoch = la->epoch;
	return slot_of(la, parent);
}

/* The fetch S's directory had on its way (walk-ahead or refill) ended:
 * whoever waits for it stops. mu held. */
static void ahead_end(lookahead *la, struct la_slot *s)
{
	if (!s->ahead)
		return;
	s->ahead = 0;
	s->ahead_refill = 0;
	pthread_cond_broadcast(&la->ahead_cv);
}

void lookahead_put(lookahead *la, uint64_t parent, struct lookahead_batch *b, uint64_t gen,
                   uint64_t epoch, uint64_t read_ns, int eof)
{
	struct la_slot *s = put_begin(la, parent, b, gen, epoch, read_ns, eof);
	if (epoch != la->seq || la->ttl_ns == 0) {
		if (s->parent == parent)
			ahead_end(la, s);
		pthread_mutex_unlock(&la->mu);
		lookahead_batch_free(b);
		return;
	}
	if (s->parent != parent)
		slot_take(la, s, parent);
	s->ahead_batch = s->ahead && !s->ahead_refill;
	ahead_end(la, s);
	next_clear(la, s); /* it followed the batch this one replaces */
	la->dbytes += b->dbytes;
	slot_install(la, s, b);
	pthread_mutex_unlock(&la->mu);
}

int lookahead_refill(lookahead *la, uint64_t parent, uint64_t data_ttl_ns, char *start, int *data)
{
	int want = 0;
	uint64_t now = clock_mono_ns();
	pthread_mutex_lock(&la->mu);
	struct la_slot *s = slot_of(la, parent);
	/* Past the middle: the second half gives the fetch time (a walk over
	 * 100 directories comes back here 100 lookups later, one over one
	 * directory 128 lookups later). */
	if (la->off || s->parent != parent || !batch_live(la, s, now) || s->b->eof ||
	    s->refilled || s->nb || s->ahead || s->n < 2 || s->next < (s->n + 1) / 2 ||
	    s->b->seq != la->seq)
		goto out;
	/* At this walk's pace the next batch, read now, has its last entry
	 * asked for about N - NEXT + N entries from now: not when that
	 * outlives what it may answer for (its bytes then fail the open as
	 * stale and are fetched again: a wasted fetch, and bytes older at
	 * their use than the walk's own fetch at the batch's end gives). */
	uint64_t bound = s->b->data && data_ttl_ns < la->ttl_ns ? data_ttl_ns : la->ttl_ns;
	if (bound == 0 || (now - s->read_ns) / s->next * (2 * s->n - s->next) >= bound / 4 * 3)
		goto out;
	const char *last = s->ents[s->n - 1].name;
	size_t nl = strlen(last);
	memcpy(start, last, nl + 1);
	if (nl < META_NAME_MAX) {
		/* the least name after LAST (names hold no NUL) */
		start[nl] = 1;
		start[nl + 1] = 0;
	}
	*data = s->b->data;
	s->refilled = 1;
	s->ahead = 1;
	s->ahead_refill = 1;
	want = 1;
out:
	pthread_mutex_unlock(&la->mu);
	return want;
}

void lookahead_put_next(lookahead *la, uint64_t parent, struct lookahead_batch *b, uint64_t gen,
                        uint64_t epoch, uint64_t read_ns, int eof)
{
	struct la_slot *s = put_begin(la, parent, b, gen, epoch, read_ns, eof);
	/* a batch put since the claim ended it (its refill would not follow
	 * the new batch) */
	int keep = s->parent == parent && s->ahead && s->ahead_refill && epoch == la->seq &&
	           la->ttl_ns && b->n && !s->nb;
	if (s->parent == parent)
		ahead_end(la, s);
	if (keep) {
		s->nb = b;
		la->dbytes += b->dbytes;
	}
	pthread_mutex_unlock(&la->mu);
	if (!keep)
		lookahead_batch_free(b);
}

/* 1 when B has an entry for inode A or B. */
static int batch_holds(const struct lookahead_batch *b, uint64_t a, uint64_t c)
{
	for (size_t i = 0; i < b->n; i++) {
		uint64_t ino;
		if (b->ents[i].gone)
			continue;
		memcpy(&ino, b->ents[i].hdr + offsetof(struct meta_inode, ino), sizeof(ino));
		if (ino == a || ino == c)
			return 1;
	}
	return 0;
}

void lookahead_unlinked(lookahead *la, uint64_t parent, const char *name)
{
	uint64_t now = clock_mono_ns();
	pthread_mutex_lock(&la->mu);
	/* a fetch in flight may have read NAME before it went */
	la->seq++;
	struct la_slot *ps = slot_of(la, parent);
	struct lookahead_batch *pb = NULL;
	size_t at = 0;
	if (ps->parent == parent && batch_live(la, ps, now)) {
		pb = ps->b;
		for (size_t lo = 0, hi = pb->n; lo < hi;) {
			size_t mid = lo + (hi - lo) / 2;
			int c = strcmp(name, pb->ents[mid].name);
			if (c == 0) {
				at = pb->ents[mid].gone ? 0 : mid + 1;
				break;
			}
			if (c < 0)
				hi = mid;
			else
				lo = mid + 1;
		}
	}
	if (!at) {
		/* which inode lost a link is not known here: drop them all */
		la->epoch++;
		pthread_mutex_unlock(&la->mu);
		return;
	}
	struct la_ent *e = &pb->ents[at - 1];
	struct meta_inode in;
	ent_inode(e, &in);
	uint64_t gone = in.ino;
	pb->dbytes -= e->nbytes;
	la->dbytes -= e->nbytes;
	free(e->bytes);
	free(e->lay);
	e->bytes = NULL;
	e->lay = NULL;
	e->nbytes = 0;
	/* marked, not moved out: deleting a directory in name order took
	 * the first entry each time, and shifting the rest (up to
	 * META_PLUS_MAX entries) cost more than the unlink's own work here */
	e->gone = 1;
	/* The change reached GONE (link count, ctime) and PARENT (times): a
	 * batch holding either goes. Only batches with a directory or a
	 * file with more links can: GONE's other names were links when read. */
	for (size_t w = 0; la->nshared && w < LOOKAHEAD_SLOTS / 64; w++) {
		uint64_t bits = la->shared_map[w];
		while (bits) {
			size_t i = w * 64 + (size_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			struct la_slot *s = &la->slots[i];
			if (s->b && batch_holds(s->b, parent, gone))
				slot_clear(la, s);
		}
	}
	pthread_mutex_unlock(&la->mu);
}

int lookahead_walk_ahead(lookahead *la, uint64_t parent, const char *name, uint64_t *out, int max)
{
	int k = 0;
	uint64_t now = clock_mono_ns();
	pthread_mutex_lock(&la->mu);
	struct la_slot *s = slot_of(la, parent);
	if (la->off || s->parent != parent || !s->walk_ns || now - s->walk_ns >= LA_SCAN_NS ||
	    !batch_live(la, s, now))
		goto out;
	const struct la_ent *e = batch_search(s->b, name);
	if (!e)
		goto out;
	/* the directories that follow NAME in the batch, a few entries on */
	const struct la_ent *end = s->ents + s->n;
	for (const struct la_ent *c = e + 1; c < end && c < e + 1 + 4 * LOOKAHEAD_AHEAD && k < max;
	     c++) {
		uint64_t ino;
		uint8_t type;
		if (c->gone)
			continue;
		memcpy(&ino, c->hdr + offsetof(struct meta_inode, ino), sizeof(ino));
		memcpy(&type, c->hdr + offsetof(struct meta_inode, type), sizeof(type));
		if (type != META_T_DIR || ino == parent)
			continue;
		struct la_slot *cs = slot_of(la, ino);
		if (cs == s)
			continue; /* would evict the batch the walk reads */
		if (cs->parent == ino && (cs->ahead || batch_live(la, cs, now)))
			continue; /* already there or on its way */
		if (cs->parent != ino)
			slot_take(la, cs, ino);
		cs->ahead = 1;
		out[k++] = ino;
	}
out:
	pthread_mutex_unlock(&la->mu);
	return k;
}

void lookahead_ahead_done(lookahead *la, uint64_t dir)
{
	pthread_mutex_lock(&la->mu);
	struct la_slot *s = slot_of(la, dir);
	if (s->parent == dir)
		ahead_end(la, s);
	pthread_mutex_unlock(&la->mu);
}

int lookahead_wait(lookahead *la, uint64_t parent, uint64_t max_ns)
{
	int waited = 0;
	uint64_t until = clock_mono_ns() + max_ns;
	pthread_mutex_lock(&la->mu);
	struct la_slot *s = slot_of(la, parent);
	while (s->parent == parent && s->ahead) {
		uint64_t now = clock_mono_ns();
		if (now >= until)
			break;
		struct timespec ts = {.tv_sec = (time_t)(until / 1000000000ull),
		                      .tv_nsec = (long)(until % 1000000000ull)};
		waited = 1;
		pthread_cond_timedwait(&la->ahead_cv, &la->mu, &ts);
	}
	pthread_mutex_unlock(&la->mu);
	return waited;
}
