/* meta_file.c - open/close, write sessions, file length, GC and fsck.
 *
 * Sessions. A write open stores SESS + ino + client + session; close
 * deletes it. A file whose last link goes stays in the GC queue until no
 * session of it is left, so writers keep a valid inode and layout.
 *
 *   session:  (none) --open(W)/create(W)--> OPEN --close--> (none)
 *                                            |--session_prune(client dead)--> (none)
 *   gc entry: QUEUED --gc claim txn--> CLAIMED(owner, lease) --chunks removed,
 *             delete txn--> (gone);  CLAIMED --lease expires--> QUEUED
 *
 * Length. The inode's size only grows through meta_sync (max of the stored
 * size, a client report made under the current truncate_ver, and, when
 * asked, what storage holds: for each of the first chains_used stripe slots,
 * the end of the last chunk there). The storage answer is gathered outside
 * the txn; the txn then checks truncate_ver did not move meanwhile (a
 * truncate in between would make the answer stale) and otherwise starts
 * over. chains_used doubles as reported lengths grow, bounding the query:
 * clients report a length before writing chunks past the hint (3FS's
 * dynamic stripe). GC and truncate ignore the hint and visit every chain.
 *
 * A report made under an older truncate_ver (the writer had not heard of
 * another client's truncate when it wrote) cannot be taken as it is: it
 * may count bytes the truncate cut. Nor dropped: writes made after the
 * truncate, past its size, must extend the file (POSIX orders them after
 * it), and the writer's report is the only one they get. The truncate
 * cut storage before it committed, so what storage holds past the size
 * now was written after the cut: such a report raises the size to what
 * storage holds (every stripe slot, under the current truncate_ver), at
 * most to the reported length (sync_stale). A report no longer than the
 * size asks nothing.
 *
 * fsck reads the whole namespace in one read-only snapshot, so what it
 * reports is a consistent state, not a mix of before and after some op.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/status.h"
#include "common/wire.h"
#include "meta/meta_int.h"

/* ---- open ---- */

struct open_arg {
	meta_ctx *m;
	const struct meta_cred *c;
	const struct meta_req *rq;
	uint64_t ino;
	unsigned flags;
	uint64_t session;
	int replayed;  /* the open's record was there: another run came first */
	uint64_t made; /* the session an earlier attempt of this call made (a
	                * retry after a maybe-commit finds its own record) */
	struct meta_inode in;
};

static int open_check(struct open_arg *a)
{
	if (a->in.nlink == 0)
		return -ENOENT;
	if (a->in.type == META_T_SYMLINK)
		return -ELOOP;
	if (a->in.type == META_T_DIR && (a->flags & (META_O_WRITE | META_O_TRUNC)))
		return -EISDIR;
	int mask = ((a->flags & META_O_READ) ? 4 : 0) |
		   ((a->flags & (META_O_WRITE | META_O_TRUNC)) ? 2 : 0);
	return mask ? meta_may(&a->in, a->c, mask) : 0;
}

static int open_ro_body(kv_txn *t, void *arg)
{
	struct open_arg *a = arg;
	int rc = meta_get_inode(t, a->ino, 1, &a->in);
	return rc ? rc : open_check(a);
}

static int open_rw_body(kv_txn *t, void *arg)
{
	struct open_arg *a = arg;
	struct meta_idem_rec rec;
	struct meta_key k;
	struct buf b = BUF_INIT;
	a->session = 0;
	int rc = meta_idem_replay(t, a->rq, META_OP_OPEN, a->ino, &rec, &a->in);
	/* sticky: a retry of this body can find the record an earlier
	 * attempt wrote over the one it found */
	if (rc == 1 && !(a->made && rec.aux == a->made))
		a->replayed = 1;
	/* a run undone (meta_otrunc_undo: no session): this one opens
	 * afresh, as a resend */
	if (rc == 1 && rec.aux == 0)
		rc = 0;
	if (rc == 1)
		a->session = rec.aux;
	if (rc)
		return rc < 0 ? rc : 0;
	/* conflict read: an unlink racing this open either commits first
	 * (we see nlink 0) or aborts us */
	if ((rc = meta_get_inode(t, a->ino, 0, &a->in)))
		return rc;
	if ((rc = open_check(a)))
		return rc;
	struct meta_session_rec s = { .client = a->rq ? a->rq->client : 0,
				      .opened = meta_now(a->m) };
	do
		s.session = meta_random(a->m);
	while (s.session == 0);
	meta_key_session(&k, a->ino, s.client, s.session);
	a->made = s.session;
	rc = meta_session_encode(&s, &b);
	if (rc == 0)
		rc = kv_set(t, kv_mem(k.b, k.n), kv_mem(b.data, b.len));
	buf_fini(&b);
	if (rc)
		return rc;
	a->session = s.session;
	return meta_idem_put(a->m, t, a->rq, META_OP_OPEN, 0, a->ino, s.session);
}

int meta_open(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq, uint64_t ino,
	      unsigned flags, struct meta_inode *out, uint64_t *session)
{
	struct open_arg *a = calloc(1, sizeof(*a));
	int rc;
	if (!a)
		return -ENOMEM;
	/* An O_TRUNC of a read-only open too runs under a write session and
	 * the open's record: its undo, its session check and a resend's
	 * storage query (meta_otrunc_run) need them. */
	if (flags & META_O_TRUNC)
		flags |= META_O_WRITE;
	*a = (struct open_arg){ .m = m, .c = c, .rq = rq, .ino = ino, .flags = flags };
	if (flags & META_O_WRITE)
		rc = meta_run_rw(m, rq, open_rw_body, a);
	else
		rc = meta_run_ro(m, open_ro_body, a);
	if (rc == 0 && (flags & META_O_TRUNC) && a->in.type == META_T_FILE) {
		struct meta_setattr sa = { .valid = META_SET_SIZE, .size = 0 };
		/* by whom (its own session is no other writer:
		 * meta_setattr), tracked apart from the open itself, whose
		 * record is already written (meta_otrunc_req) */
		struct meta_req trq = meta_otrunc_req(rq);
		/* its cuts under the open's key: a late one of a run of the
		 * open that lost to another must not cut what was written
		 * since (meta_attr.c "Late cuts") */
		struct meta_cut_key k = {rq ? rq->client : 0, rq ? rq->seq : 0};
		struct meta_otrunc_run ot = {a->session, a->replayed, 0};
		rc = meta_setattr_cut(m, c, rq ? &trq : NULL, ino, &sa, rq && rq->seq ? &k : NULL,
		                      &ot, &a->in);
		if (rc && a->session &&
		    meta_otrunc_undo(m, rq, ino, a->session, &a->in, &ot.answered) == 1)
			rc = 0;
		if (rc == 0 && ot.answered)
			a->session = ot.answered;
	}
	if (rc == 0 && out)
		*out = a->in;
	if (session)
		*session = rc == 0 ? a->session : 0;
	free(a);
	return rc;
}

struct otrunc_undo_arg {
	meta_ctx *m;
	const struct meta_req *rq;
	uint64_t ino, session;
	int applied;
	uint64_t answered;
	struct meta_inode *in;
};

static int otrunc_undo_body(kv_txn *t, void *arg)
{
	struct otrunc_undo_arg *a = arg;
	struct meta_req trq = meta_otrunc_req(a->rq);
	struct meta_idem_rec rec;
	struct meta_key k;
	/* conflict read: a run committing the truncate lands first (its
	 * session stays) or aborts us (meta_setattr_cut's session check) */
	int rc = meta_idem_check(t, &trq, META_OP_SETATTR, &rec);
	/* applied to another inode (a create's run afresh after an undo):
	 * nobody answered this session */
	if (rc == 1 && rec.ino && rec.ino != a->ino)
		rc = 0;
	a->applied = rc == 1;
	a->answered = rc == 1 ? rec.aux : 0;
	if (rc == 1) {
		rc = meta_get_inode(t, a->ino, 1, a->in);
		return rc == -ENOENT ? 0 : rc;
	}
	if (rc < 0)
		return rc;
	meta_key_session(&k, a->ino, a->rq ? a->rq->client : 0, a->session);
	if ((rc = kv_clear(t, kv_mem(k.b, k.n))) < 0)
		return rc;
	if (!a->rq || !a->rq->seq)
		return 0;
	/* the record only while it names this session (a run after an undo,
	 * another run's, wrote its own), and kept: a run after this one is
	 * a resend (meta_otrunc_run.resent) */
	struct kv_slice v;
	meta_key_idem(&k, a->rq->client, a->rq->seq);
	if ((rc = kv_get(t, kv_mem(k.b, k.n), 0, &v)) <= 0)
		return rc;
	if ((rc = meta_idem_decode(v.p, v.n, &rec)))
		return rc;
	if (rec.aux != a->session)
		return 0;
	return meta_idem_put(a->m, t, a->rq, rec.op, rec.result, rec.ino, 0);
}

int meta_otrunc_undo(meta_ctx *m, const struct meta_req *rq, uint64_t ino, uint64_t session,
                     struct meta_inode *in, uint64_t *answered)
{
	struct otrunc_undo_arg a = {m, rq, ino, session, 0, 0, in};
	struct kv_run_opts o = {.idempotent = 1, .max_retries = 40};
	int rc = meta_run(m, &o, otrunc_undo_body, &a);
	if (rc < 0)
		LOG_WARN("meta", "failed O_TRUNC: session of ino=%llu kept: %s",
		         (unsigned long long)ino, cfs_strerror(rc));
	if (rc == 0 && a.applied)
		*answered = a.answered;
	return rc < 0 ? rc : a.applied;
}

/* ---- length ---- */

struct sync_arg {
	meta_ctx *m;
	uint64_t ino;
	const struct meta_length *len;
	int query;
	uint64_t storage_len;
	uint64_t cap;         /* storage_len counts up to this */
	uint64_t seen_tv;     /* truncate_ver the storage answer was taken under */
	int stale;
	int stale_report; /* LEN is under an older truncate_ver and longer
	                   * than the size: nothing written, sync_stale next */
	struct meta_inode in;
};

/* A report LEN made under an older truncate_ver than IN's that would
 * raise its size (file comment, "Length"). */
static int report_stale(const struct meta_length *len, const struct meta_inode *in)
{
	return len && len->truncate_ver < in->truncate_ver && len->length > in->size;
}

static int sync_read_body(kv_txn *t, void *arg)
{
	struct sync_arg *a = arg;
	return meta_get_inode(t, a->ino, 1, &a->in);
}

static int sync_body(kv_txn *t, void *arg)
{
	struct sync_arg *a = arg;
	a->stale = 0;
	int rc = meta_get_inode(t, a->ino, 0, &a->in);
	if (rc)
		return rc;
	/* Inline data: the record's length is the size (meta_idata.c). */
	if (a->in.type != META_T_FILE || a->in.idata)
		return 0;
	if (a->query && a->in.truncate_ver != a->seen_tv) {
		a->stale = 1;
		return 0;
	}
	a->stale_report = report_stale(a->len, &a->in);
	if (a->stale_report)
		return 0;
	uint64_t size = a->in.size;
	uint64_t sl = a->storage_len < a->cap ? a->storage_len : a->cap;
	if (a->query && sl > size)
		size = sl;
	if (a->len && a->len->truncate_ver == a->in.truncate_ver && a->len->length > size)
		size = a->len->length;
	uint32_t hint = meta_chains_hint(&a->in, size);
	if (size == a->in.size && hint == a->in.chains_used)
		return 0;
	int64_t now = meta_now(a->m);
	if (size != a->in.size)
		a->in.mtime = a->in.ctime = now;
	a->in.size = size;
	a->in.chains_used = hint;
	return meta_put_inode(t, &a->in);
}

static _Thread_local int storage_barred, storage_refused;

int meta_storage_bar(int on)
{
	int refused = storage_refused;
	storage_barred = on;
	storage_refused = 0;
	return on ? 0 : refused;
}

/* ALL: every stripe slot, not only the first chains_used. A client that
 * died may have written chunks past the hint it last reported (the mount
 * does not report before crossing it), so the session prune asks them all
 * (and so does a truncate that must know what storage holds). */
int meta_query_storage(meta_ctx *m, const struct meta_inode *in, int all, uint64_t *len)
{
	const struct meta_storage *s = &m->o.storage;
	const struct meta_layout *l = &in->layout;
	uint32_t perm[META_MAX_STRIPE];
	uint32_t slots = in->chains_used < l->stripe && !all ? in->chains_used : l->stripe;
	*len = 0;
	if (storage_barred) {
		storage_refused = 1;
		return -CFS_EUNAVAIL;
	}
	if (!s->query_last_chunk)
		return -EOPNOTSUPP;
	meta_layout_perm(l->seed, l->stripe, perm);
	for (uint32_t i = 0; i < (slots ? slots : 1); i++) {
		uint32_t idx, clen;
		uint32_t chain = l->chains[perm[i]];
		int rc = s->query_last_chunk(s->arg, chain, in->ino, &idx, &clen);
		if (rc < 0) {
			LOG_WARN("meta", "length query failed: ino=%llu chain=%u: %s",
				 (unsigned long long)in->ino, chain, cfs_strerror(rc));
			return rc;
		}
		if (rc == 1 && clen <= l->chunk_size) {
			uint64_t end = (uint64_t)idx * l->chunk_size + clen;
			if (end > *len)
				*len = end;
		}
	}
	return 0;
}

static int sync_run(meta_ctx *m, uint64_t ino, const struct meta_length *len, int query,
                    uint64_t cap, uint64_t *size);

/* The follow-up of a stale report LEN (file comment, "Length"): the size
 * becomes at least what storage holds under the current truncate_ver, up
 * to LEN's length, or without that bound when the caller asked storage
 * anyway (QUERY). An instance without storage (meta_storage_none) has no
 * chunk to count: the report is dropped, as before. */
static int sync_stale(meta_ctx *m, uint64_t ino, const struct meta_length *len, int query,
                      uint64_t *size)
{
	int rc = sync_run(m, ino, NULL, META_SYNC_QUERY_ALL, query ? UINT64_MAX : len->length, size);
	if (rc == -EOPNOTSUPP)
		rc = sync_run(m, ino, NULL, 0, UINT64_MAX, size);
	return rc;
}

int meta_sync(meta_ctx *m, uint64_t ino, const struct meta_length *len, int query,
	      uint64_t *size)
{
	return sync_run(m, ino, len, query, UINT64_MAX, size);
}

static int sync_run(meta_ctx *m, uint64_t ino, const struct meta_length *len, int query,
                    uint64_t cap, uint64_t *size)
{
	struct sync_arg *a = calloc(1, sizeof(*a));
	int rc = 0;
	if (!a)
		return -ENOMEM;
	*a = (struct sync_arg){.m = m, .ino = ino, .len = len, .query = query, .cap = cap};
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 40 };
	for (int attempt = 0; attempt < 8; attempt++) {
		if (query) {
			rc = meta_run_ro(m, sync_read_body, a);
			if (rc == 0 && a->in.type == META_T_FILE && !a->in.idata)
				rc = meta_query_storage(m, &a->in, query == META_SYNC_QUERY_ALL,
						   &a->storage_len);
			if (rc)
				break;
			a->seen_tv = a->in.truncate_ver;
		}
		rc = meta_run(m, &o, sync_body, a);
		if (rc || !a->stale)
			break;
		rc = -CFS_ECONFLICT;
	}
	if (rc == 0 && a->stale_report) {
		rc = sync_stale(m, ino, len, query, size);
	} else if (rc == 0 && size) {
		*size = a->in.size;
	}
	free(a);
	return rc;
}

/* ---- close ---- */

struct close_arg {
	uint64_t ino, client, session;
};

static int close_body(kv_txn *t, void *arg)
{
	struct close_arg *a = arg;
	struct meta_key k;
	meta_key_session(&k, a->ino, a->client, a->session);
	return kv_clear(t, kv_mem(k.b, k.n));
}

int meta_close(meta_ctx *m, const struct meta_req *rq, uint64_t ino, uint64_t session,
	       const struct meta_length *len)
{
	if (session == 0)
		return 0;
	int rc = meta_sync(m, ino, len, 1, NULL);
	if (rc && rc != -ENOENT)
		return rc;
	struct close_arg a = { ino, rq ? rq->client : 0, session };
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 40 };
	return meta_run(m, &o, close_body, &a);
}

/* One txn: the length a closing client knows (no storage query) and the
 * session's removal. The inode read is a conflict read, so a truncate
 * racing this close either lands first (truncate_ver moved: a report
 * longer than the size goes through sync_stale first) or aborts us. */
struct close_known_arg {
	meta_ctx *m;
	uint64_t ino, client, session;
	const struct meta_length *len;
	int found, stale_report;
	struct meta_inode in;
};

static int close_known_body(kv_txn *t, void *arg)
{
	struct close_known_arg *a = arg;
	struct meta_key k;
	int rc = 0;
	a->stale_report = 0;
	if (a->len) {
		rc = meta_get_inode(t, a->ino, 0, &a->in);
		if (rc && rc != -ENOENT)
			return rc;
		a->found = rc == 0;
		/* the session stays until sync_stale has the length: if that
		 * fails, a retried close (or the prune) still finds it */
		if (a->found && a->in.type == META_T_FILE && !a->in.idata &&
		    report_stale(a->len, &a->in)) {
			a->stale_report = 1;
			return 0;
		}
	}
	meta_key_session(&k, a->ino, a->client, a->session);
	rc = kv_clear(t, kv_mem(k.b, k.n));
	if (rc || !a->len || !a->found)
		return rc;
	if (a->in.type != META_T_FILE || a->in.idata)
		return 0;
	uint64_t size = a->in.size;
	if (a->len->truncate_ver == a->in.truncate_ver && a->len->length > size)
		size = a->len->length;
	uint32_t hint = meta_chains_hint(&a->in, size);
	if (size == a->in.size && hint == a->in.chains_used)
		return 0;
	if (size != a->in.size)
		a->in.mtime = a->in.ctime = meta_now(a->m);
	a->in.size = size;
	a->in.chains_used = hint;
	return meta_put_inode(t, &a->in);
}

int meta_close_known(meta_ctx *m, const struct meta_req *rq, uint64_t ino, uint64_t session,
		     const struct meta_length *len)
{
	if (session == 0)
		return len ? meta_sync(m, ino, len, 0, NULL) : 0;
	struct close_known_arg *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	*a = (struct close_known_arg){ .m = m, .ino = ino, .client = rq ? rq->client : 0,
				       .session = session, .len = len };
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 40 };
	int rc = meta_run(m, &o, close_known_body, a);
	if (rc == 0 && a->stale_report) {
		rc = sync_stale(m, ino, len, 0, NULL);
		a->len = NULL; /* the length is in: the close ends the session */
		if (rc == 0)
			rc = meta_run(m, &o, close_known_body, a);
	}
	free(a);
	return rc;
}

struct close_many_arg {
	uint64_t client;
	const uint64_t *pairs;
	int n;
};

static int close_many_body(kv_txn *t, void *arg)
{
	struct close_many_arg *a = arg;
	for (int i = 0; i < a->n; i++) {
		struct meta_key k;
		meta_key_session(&k, a->pairs[2 * i], a->client, a->pairs[2 * i + 1]);
		int rc = kv_clear(t, kv_mem(k.b, k.n));
		if (rc)
			return rc;
	}
	return 0;
}

int meta_close_many(meta_ctx *m, const struct meta_req *rq, const uint64_t *pairs, int n)
{
	if (n < 1 || n > META_CLOSE_MANY_MAX)
		return -EINVAL;
	struct close_many_arg a = { rq ? rq->client : 0, pairs, n };
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 40 };
	return meta_run(m, &o, close_many_body, &a);
}

int meta_fsync(meta_ctx *m, uint64_t ino, const struct meta_length *len, int query,
	       uint64_t *size)
{
	int rc = 0;
	if (size)
		*size = 0;
	if (ino && (len || query)) {
		rc = meta_sync(m, ino, len, query, size);
		if (rc)
			return rc;
	}
	return kv_flush(m->kv);
}

/* ---- GC ---- */

/* GC works in batches: one txn claims up to GC_BATCH queue entries, one
 * read txn loads their inodes, the chunk removals of the whole batch (one
 * per chain of each layout) run on up to GC_THREADS threads at once, and
 * one txn deletes every inode whose removals all succeeded. So a queue of
 * N files costs ~N/GC_BATCH * 3 txns and N * chains storage calls, with
 * GC_THREADS of them in flight. Batch limits: a claim writes one key and
 * reads two conflicts per entry, a finish writes three keys and reads one
 * (KV_MAX_WRITES 64, KV_MAX_READ_CONFLICTS 64). */
#define GC_BATCH 16
#define GC_THREADS 8

struct gc_arg {
	meta_ctx *m;
	int64_t now;
	int max;                    /* entries to claim */
	int n;                      /* claimed */
	uint64_t ino[GC_BATCH];     /* claimed entries */
	int ok[GC_BATCH];           /* chunks removed (or no chunks to remove) */
	int done[GC_BATCH];         /* finish txn: 1 deleted, 0 lost the claim */
	int found[GC_BATCH];        /* inode present */
	int no_chunks[GC_BATCH];    /* inline file that never began converting */
	struct meta_inode in[GC_BATCH];
};

int meta_has_sessions(kv_txn *t, uint64_t ino, int snapshot)
{
	struct meta_key b, e;
	struct kv_range r;
	meta_key_session_range(&b, &e, ino);
	int rc = kv_get_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n), 1, snapshot, 0, &r);
	return rc < 0 ? rc : r.n > 0;
}

/* The id after a key's 4-byte prefix, or 0 for a key too short to hold
 * one (never written by us; treated as absent). */
static uint64_t key_id(struct kv_slice key)
{
	return key.n >= 12 ? wire_load_be64((const uint8_t *)key.p + 4) : 0;
}

#define GC_SCAN_PAGE 64
#define GC_SCAN_PAGES 64

/* Claims queue entry KV if eligible: 1 claimed, 0 skipped, <0. */
static int gc_try_claim(struct gc_arg *a, kv_txn *t, const struct kv_pair *kv)
{
	struct meta_gc_rec g;
	struct meta_key k;
	struct kv_slice v;
	struct buf buf = BUF_INIT;
	if (meta_gc_decode(kv->val.p, kv->val.n, &g)) {
		LOG_WARN("meta", "gc: corrupt queue entry skipped");
		return 0;
	}
	if (g.claim_owner && g.claim_owner != a->m->o.instance_id && g.claim_until > a->now)
		return 0;
	/* Conflict reads: a concurrent claim of this entry, or a session
	 * appearing, aborts one of us. */
	meta_key_gc(&k, g.ino);
	int rc = kv_get(t, kv_mem(k.b, k.n), 0, &v);
	if (rc <= 0)
		return rc;
	if ((rc = meta_has_sessions(t, g.ino, 0)) != 0)
		return rc < 0 ? rc : 0;
	g.claim_owner = a->m->o.instance_id;
	g.claim_until = a->now + a->m->o.gc_claim_ns;
	rc = meta_gc_encode(&g, &buf);
	if (rc == 0)
		rc = kv_set(t, kv_mem(k.b, k.n), kv_mem(buf.data, buf.len));
	buf_fini(&buf);
	if (rc)
		return rc;
	a->ino[a->n++] = g.ino;
	return 1;
}

/* Pages through the queue with snapshot reads (no conflicts) until MAX
 * eligible entries turn up, so files still open for write at the head of
 * the queue cannot starve the rest; at most GC_SCAN_PAGES pages a step. */
static int gc_claim_body(kv_txn *t, void *arg)
{
	struct gc_arg *a = arg;
	struct meta_key b, e;
	struct kv_range r;
	a->n = 0;
	meta_key_prefix_range(&b, &e, "GCQU");
	struct kv_slice begin = kv_mem(b.b, b.n), end = kv_mem(e.b, e.n);
	for (int page = 0; page < GC_SCAN_PAGES; page++) {
		struct kv_range sr;
		struct meta_key sb, se, unused;
		int rc = kv_get_range(t, begin, end, GC_SCAN_PAGE, 1, 0, &r);
		if (rc < 0)
			return rc;
		if (r.n == 0)
			break;
		/* One snapshot read finds which inodes of the page have write
		 * sessions: both ranges are in inode order, so merge them. */
		uint64_t lo = key_id(r.kvs[0].key), hi = key_id(r.kvs[r.n - 1].key);
		meta_key_session_range(&sb, &unused, lo);
		meta_key_session_range(&unused, &se, hi);
		if ((rc = kv_get_range(t, kv_mem(sb.b, sb.n), kv_mem(se.b, se.n), 0, 1, 0, &sr)) < 0)
			return rc;
		int j = 0;
		for (int i = 0; i < r.n; i++) {
			uint64_t ino = key_id(r.kvs[i].key);
			while (j < sr.n && key_id(sr.kvs[j].key) < ino)
				j++;
			if (ino == 0 || (j < sr.n && key_id(sr.kvs[j].key) == ino))
				continue;
			rc = gc_try_claim(a, t, &r.kvs[i]);
			if (rc < 0)
				return rc;
			if (a->n == a->max)
				return 0;
		}
		if (!r.has_more)
			break;
		if ((rc = kv_range_continue(t, &r, 0, &begin, &end)))
			return rc;
	}
	return 0;
}

static int gc_read_body(kv_txn *t, void *arg)
{
	struct gc_arg *a = arg;
	for (int i = 0; i < a->n; i++) {
		int rc = meta_get_inode(t, a->ino[i], 1, &a->in[i]);
		if (rc && rc != -ENOENT)
			return rc;
		a->found[i] = rc == 0;
		a->no_chunks[i] = 0;
		if (rc == 0 && a->in[i].idata) {
			struct meta_idata_rec r;
			rc = meta_idata_get(t, a->ino[i], 1, &r);
			if (rc < 0 && rc != -CFS_ECORRUPT)
				return rc;
			a->no_chunks[i] = rc >= 0 && !(r.flags & META_IDATA_F_CHUNK0);
		}
	}
	return 0;
}

/* Entry I was read as an inline file that never began converting (no
 * chunk to remove). The read was an earlier txn: a conversion may have
 * begun since (its chunk 0 would outlive the inode) or ended (the file is
 * chunked). Conflict reads in the clearing txn: 1 when chunks may exist
 * now, 0 if not, <0. */
static int gc_chunks_since(kv_txn *t, struct gc_arg *a, int i)
{
	struct meta_inode in;
	struct meta_idata_rec r;
	int rc = meta_get_inode(t, a->ino[i], 0, &in);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	if (in.type != META_T_FILE)
		return 0;
	if (!in.idata)
		return 1;
	rc = meta_idata_get(t, a->ino[i], 0, &r);
	if (rc == -CFS_ECORRUPT)
		return 1; /* as gc_read_body: a record it cannot read may hide an attempt */
	if (rc < 0)
		return rc;
	return rc > 0 && (r.flags & META_IDATA_F_CHUNK0) ? 1 : 0;
}

static int gc_finish_body(kv_txn *t, void *arg)
{
	struct gc_arg *a = arg;
	for (int i = 0; i < a->n; i++) {
		struct meta_key k, b, e;
		struct kv_slice v;
		struct meta_gc_rec g;
		a->done[i] = 0;
		if (!a->ok[i])
			continue;
		meta_key_gc(&k, a->ino[i]);
		int rc = kv_get(t, kv_mem(k.b, k.n), 0, &v);
		if (rc < 0)
			return rc;
		if (rc == 0) {
			/* Only the claim holder deletes the entry: this is our
			 * own earlier attempt that committed with an unknown
			 * outcome. */
			a->done[i] = 1;
			continue;
		}
		if ((rc = meta_gc_decode(v.p, v.n, &g)))
			return rc;
		if (g.claim_owner != a->m->o.instance_id)
			continue;
		if (a->no_chunks[i] && (rc = gc_chunks_since(t, a, i)) != 0) {
			if (rc < 0)
				return rc;
			/* still claimed: our next step reads it again and
			 * removes the chunks first. Nothing noted in A: this
			 * body may run again (a conflict), and must look again
			 * then, not take the entry as one whose chunks went. */
			continue;
		}
		if ((rc = kv_clear(t, kv_mem(k.b, k.n))))
			return rc;
		meta_key_inode(&k, a->ino[i]);
		if ((rc = kv_clear(t, kv_mem(k.b, k.n))))
			return rc;
		meta_key_xattr_range(&b, &e, a->ino[i]);
		if ((rc = kv_clear_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n))))
			return rc;
		if (a->found[i] && a->in[i].idata && (rc = meta_idata_clear(t, a->ino[i])))
			return rc;
		a->done[i] = 1;
	}
	return 0;
}

/* The removals of one batch: task k is (entry, chain) in order. */
struct gc_removals {
	struct gc_arg *a;
	const struct meta_storage *s;
	int ntasks;
	int entry[GC_BATCH * META_MAX_STRIPE];
	uint32_t chain[GC_BATCH * META_MAX_STRIPE];
	int rc[GC_BATCH * META_MAX_STRIPE];
	_Atomic int next;
};

static void *gc_remove_thread(void *arg)
{
	struct gc_removals *w = arg;
	for (;;) {
		int k = atomic_fetch_add_explicit(&w->next, 1, memory_order_relaxed);
		if (k >= w->ntasks)
			return NULL;
		uint64_t ino = w->a->ino[w->entry[k]];
		w->rc[k] = w->s->gc_remove_chunks
		               ? w->s->gc_remove_chunks(w->s->arg, w->chain[k], ino, 0)
		               : w->s->remove_chunks(w->s->arg, w->chain[k], ino, 0, NULL);
		if (w->rc[k] < 0)
			LOG_WARN("meta", "gc: remove chunks failed: ino=%llu chain=%u: %s",
				 (unsigned long long)ino, w->chain[k], cfs_strerror(w->rc[k]));
	}
}

/* Removes the chunks of every claimed file; sets a->ok per entry. 0, or
 * -EOPNOTSUPP without a storage service. */
static int gc_remove_all(struct gc_arg *a)
{
	const struct meta_storage *s = &a->m->o.storage;
	struct gc_removals *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->a = a;
	w->s = s;
	for (int i = 0; i < a->n; i++) {
		a->ok[i] = 1;
		if (!a->found[i] || a->in[i].type != META_T_FILE || a->no_chunks[i])
			continue;
		for (uint32_t c = 0; c < a->in[i].layout.nchains; c++) {
			w->entry[w->ntasks] = i;
			w->chain[w->ntasks] = a->in[i].layout.chains[c];
			w->ntasks++;
		}
	}
	if (w->ntasks && !s->remove_chunks && !s->gc_remove_chunks) {
		free(w);
		return -EOPNOTSUPP;
	}
	pthread_t th[GC_THREADS];
	int nth = 0;
	int want = w->ntasks < GC_THREADS ? w->ntasks : GC_THREADS;
	/* this thread works too; helpers only when there is more than one task */
	for (int i = 1; i < want; i++)
		if (pthread_create(&th[nth], NULL, gc_remove_thread, w) == 0)
			nth++;
	gc_remove_thread(w);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	for (int k = 0; k < w->ntasks; k++)
		if (w->rc[k] < 0)
			a->ok[w->entry[k]] = 0;
	int rc = 0;
	for (int k = 0; k < w->ntasks && !rc; k++)
		if (w->rc[k] < 0)
			rc = w->rc[k];
	free(w);
	return rc;
}

int meta_gc_batch(meta_ctx *m, int max)
{
	struct gc_arg *a = calloc(1, sizeof(*a));
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 40 };
	int rc, removed = 0, removal_err = 0;
	if (!a)
		return -ENOMEM;
	a->m = m;
	a->now = meta_now(m);
	a->max = max < 1 ? 1 : max > GC_BATCH ? GC_BATCH : max;
	rc = meta_run(m, &o, gc_claim_body, a);
	if (rc || a->n == 0)
		goto out;
	if ((rc = meta_run_ro(m, gc_read_body, a)))
		goto out;
	removal_err = gc_remove_all(a);
	if (removal_err == -EOPNOTSUPP || removal_err == -ENOMEM) {
		rc = removal_err;
		goto out;
	}
	rc = meta_run(m, &o, gc_finish_body, a);
	for (int i = 0; rc == 0 && i < a->n; i++)
		removed += a->done[i];
	/* Entries whose removals failed stay claimed: retried at our next
	 * step, by others once the lease expires. */
	if (rc == 0 && removal_err && removed == 0)
		rc = removal_err;
out:
	free(a);
	return rc ? rc : removed;
}

int meta_gc_step(meta_ctx *m)
{
	return meta_gc_batch(m, 1);
}

/* ---- session cleanup ---- */

struct sess_ref {
	uint64_t ino, client, session;
	int keep; /* the file's length sync failed: kept for the next prune */
};

struct prune_arg {
	meta_client_dead_fn is_dead;
	void *dead_arg;
	struct sess_ref *dead;
	size_t ndead, cap;
	size_t from, to; /* delete batch [from, to) */
};

static int sess_scan_body(kv_txn *t, void *arg)
{
	struct prune_arg *a = arg;
	struct meta_key b, e;
	struct kv_range r;
	a->ndead = 0;
	meta_key_prefix_range(&b, &e, "SESS");
	int rc = kv_get_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n), 0, 1, 0, &r);
	if (rc < 0)
		return rc;
	for (int i = 0; i < r.n; i++) {
		const uint8_t *key = r.kvs[i].key.p;
		if (r.kvs[i].key.n != 28)
			continue;
		struct sess_ref s = { wire_load_be64(key + 4), wire_load_be64(key + 12),
				      wire_load_be64(key + 20), 0 };
		if (!a->is_dead(a->dead_arg, s.client))
			continue;
		if (a->ndead == a->cap) {
			size_t nc = a->cap ? a->cap * 2 : 64;
			struct sess_ref *n = realloc(a->dead, nc * sizeof(*n));
			if (!n)
				return -ENOMEM;
			a->dead = n;
			a->cap = nc;
		}
		a->dead[a->ndead++] = s;
	}
	return 0;
}

static int sess_del_body(kv_txn *t, void *arg)
{
	struct prune_arg *a = arg;
	for (size_t i = a->from; i < a->to; i++) {
		struct meta_key k;
		if (a->dead[i].keep)
			continue;
		meta_key_session(&k, a->dead[i].ino, a->dead[i].client, a->dead[i].session);
		int rc = kv_clear(t, kv_mem(k.b, k.n));
		if (rc)
			return rc;
	}
	return 0;
}

int meta_session_prune(meta_ctx *m, meta_client_dead_fn is_dead, void *arg)
{
	struct prune_arg a = { .is_dead = is_dead, .dead_arg = arg };
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 40 };
	int rc = meta_run_ro(m, sess_scan_body, &a);
	size_t dropped = 0;
	/* The dead client's writes are acknowledged but their length may be
	 * known only to storage: a session goes only once that length is in
	 * the inode. After a failed sync the file's sessions stay (the next
	 * prune tries again); dropped, nothing would ever ask storage again
	 * and the file would stay short of what was written. An instance
	 * without storage (-EOPNOTSUPP) has nothing to ask: they go. */
	for (size_t i = 0; rc == 0 && i < a.ndead; i++) {
		if (i > 0 && a.dead[i].ino == a.dead[i - 1].ino) {
			a.dead[i].keep = a.dead[i - 1].keep;
			continue;
		}
		int src = meta_sync(m, a.dead[i].ino, NULL, META_SYNC_QUERY_ALL, NULL);
		if (src && src != -ENOENT && src != -EOPNOTSUPP) {
			LOG_WARN("meta", "session prune: length sync failed, sessions kept: "
				 "ino=%llu: %s", (unsigned long long)a.dead[i].ino,
				 cfs_strerror(src));
			a.dead[i].keep = 1;
		}
	}
	for (size_t i = 0; i < a.ndead; i++)
		dropped += !a.dead[i].keep;
	for (a.from = 0; rc == 0 && a.from < a.ndead; a.from = a.to) {
		a.to = a.from + 48 < a.ndead ? a.from + 48 : a.ndead;
		rc = meta_run(m, &o, sess_del_body, &a);
	}
	free(a.dead);
	return rc ? rc : (int)dropped;
}

/* ---- fsck ---- */

struct fsck_ino {
	uint64_t ino, parent;
	uint32_t nlink, links;
	uint32_t subdirs;      /* directory dentries inside (directories) */
	uint8_t type, in_gc;
	uint8_t idata, idata_seen; /* inline file; its IDAT record was found */
	uint64_t size;
	uint64_t dent_parent;  /* parent named by the (first) dentry */
};

struct fsck_arg {
	struct fsck_ino *v;
	size_t n, cap;
	struct meta_fsck_report r;
};

static struct fsck_ino *fsck_find(struct fsck_arg *a, uint64_t ino)
{
	size_t lo = 0, hi = a->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (a->v[mid].ino < ino)
			lo = mid + 1;
		else if (a->v[mid].ino > ino)
			hi = mid;
		else
			return &a->v[mid];
	}
	return NULL;
}

static int scan_prefix(kv_txn *t, const char *pfx, struct kv_range *r)
{
	struct meta_key b, e;
	meta_key_prefix_range(&b, &e, pfx);
	return kv_get_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n), 0, 1, 0, r);
}

static int fsck_body(kv_txn *t, void *arg)
{
	struct fsck_arg *a = arg;
	struct kv_range r;
	struct meta_inode *in = malloc(sizeof(*in));
	if (!in)
		return -ENOMEM;
	a->n = 0;
	memset(&a->r, 0, sizeof(a->r));
	int rc = scan_prefix(t, "INOD", &r);
	for (int i = 0; rc == 0 && i < r.n; i++) {
		if (meta_inode_decode(r.kvs[i].val.p, r.kvs[i].val.n, in)) {
			LOG_WARN("meta", "fsck: corrupt inode record");
			a->r.corrupt_records++;
			continue;
		}
		/* A directory's link count lives partly in its DSTA counters:
		 * compare what callers see, not the stored base. */
		if (in->type == META_T_DIR && (rc = meta_dir_stat(t, in)))
			break;
		if (a->n == a->cap) {
			size_t nc = a->cap ? a->cap * 2 : 1024;
			struct fsck_ino *nv = realloc(a->v, nc * sizeof(*nv));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			a->v = nv;
			a->cap = nc;
		}
		a->v[a->n++] = (struct fsck_ino){ .ino = in->ino, .parent = in->parent,
						  .nlink = in->nlink, .type = in->type,
						  .idata = (uint8_t)in->idata, .size = in->size };
		if (in->idata)
			a->r.idata_files++;
	}
	free(in);
	a->r.inodes = a->n;
	if (rc == 0)
		rc = scan_prefix(t, "GCQU", &r);
	for (int i = 0; rc == 0 && i < r.n; i++) {
		if (r.kvs[i].key.n != 12)
			continue;
		struct fsck_ino *f = fsck_find(a, wire_load_be64((const uint8_t *)r.kvs[i].key.p + 4));
		if (f)
			f->in_gc = 1;
		a->r.gc_pending++;
	}
	/* Inline data: each record belongs to an inline inode of its length. */
	if (rc == 0)
		rc = scan_prefix(t, "IDAT", &r);
	for (int i = 0; rc == 0 && i < r.n; i++) {
		struct meta_idata_rec d;
		if (r.kvs[i].key.n != 12 || meta_idata_decode(r.kvs[i].val.p, r.kvs[i].val.n, &d)) {
			a->r.corrupt_records++;
			continue;
		}
		uint64_t ino = wire_load_be64((const uint8_t *)r.kvs[i].key.p + 4);
		struct fsck_ino *f = fsck_find(a, ino);
		if (f)
			f->idata_seen = 1;
		if (!f || !f->idata || f->size != d.len) {
			LOG_WARN("meta", "fsck: inline data mismatch: ino=%llu len=%u size=%llu%s",
				 (unsigned long long)ino, d.len,
				 (unsigned long long)(f ? f->size : 0),
				 !f ? " (no inode)" : !f->idata ? " (inode not inline)" : "");
			a->r.idata_mismatch++;
		}
	}
	if (rc == 0)
		rc = scan_prefix(t, "SESS", &r);
	if (rc == 0)
		a->r.sessions = (uint64_t)r.n;
	if (rc == 0)
		rc = scan_prefix(t, "DENT", &r);
	for (int i = 0; rc == 0 && i < r.n; i++) {
		struct meta_dentry d;
		const uint8_t *key = r.kvs[i].key.p;
		a->r.dentries++;
		if (r.kvs[i].key.n <= 12 ||
		    meta_dentry_decode(r.kvs[i].val.p, r.kvs[i].val.n, &d)) {
			a->r.corrupt_records++;
			continue;
		}
		uint64_t parent = wire_load_be64(key + 4);
		struct fsck_ino *f = fsck_find(a, d.ino);
		if (!f || f->type != d.type) {
			LOG_WARN("meta", "fsck: dangling dentry: parent=%llu name=%.*s ino=%llu",
				 (unsigned long long)parent, (int)(r.kvs[i].key.n - 12),
				 (const char *)key + 12, (unsigned long long)d.ino);
			a->r.dangling_dentries++;
			continue;
		}
		if (f->links++ == 0)
			f->dent_parent = parent;
		if (d.type == META_T_DIR) {
			struct fsck_ino *p = fsck_find(a, parent);
			if (p)
				p->subdirs++;
		}
	}
	return rc;
}

/* 1 when DIR's parent chain reaches the root. */
static int fsck_reaches_root(struct fsck_arg *a, struct fsck_ino *dir)
{
	struct fsck_ino *cur = dir;
	for (size_t steps = 0; steps <= a->n && steps <= 4 * META_MAX_DEPTH; steps++) {
		if (cur->ino == META_ROOT_INO)
			return 1;
		cur = fsck_find(a, cur->parent);
		if (!cur || cur->type != META_T_DIR)
			return 0;
	}
	return 0;
}

int meta_fsck(meta_ctx *m, struct meta_chunk_ref *chunks, size_t nchunks,
	      struct meta_fsck_report *out)
{
	struct fsck_arg a = { 0 };
	int rc = meta_run_ro(m, fsck_body, &a);
	if (rc) {
		free(a.v);
		return rc;
	}
	for (size_t i = 0; i < a.n; i++) {
		struct fsck_ino *f = &a.v[i];
		if (f->type == META_T_DIR && f->nlink != 2 + f->subdirs) {
			LOG_WARN("meta", "fsck: directory link count: ino=%llu nlink=%u subdirs=%u",
				 (unsigned long long)f->ino, f->nlink, f->subdirs);
			a.r.dir_nlink_mismatch++;
		}
		if (f->idata && !f->idata_seen && f->size != 0) {
			LOG_WARN("meta", "fsck: inline file without its data: ino=%llu size=%llu",
				 (unsigned long long)f->ino, (unsigned long long)f->size);
			a.r.idata_mismatch++;
		}
		if (f->ino == META_ROOT_INO)
			continue;
		if (f->links == 0) {
			if (!(f->in_gc && f->nlink == 0)) {
				LOG_WARN("meta", "fsck: orphan inode: ino=%llu nlink=%u",
					 (unsigned long long)f->ino, f->nlink);
				a.r.orphan_inodes++;
			}
			continue;
		}
		if (f->type == META_T_DIR) {
			if (f->links != 1) {
				LOG_WARN("meta", "fsck: directory with %u dentries: ino=%llu",
					 f->links, (unsigned long long)f->ino);
				a.r.nlink_mismatch++;
			}
			if (f->dent_parent != f->parent) {
				LOG_WARN("meta", "fsck: bad parent: ino=%llu parent=%llu dentry in %llu",
					 (unsigned long long)f->ino, (unsigned long long)f->parent,
					 (unsigned long long)f->dent_parent);
				a.r.bad_parent++;
			}
			if (!fsck_reaches_root(&a, f)) {
				LOG_WARN("meta", "fsck: directory not reachable from root: ino=%llu",
					 (unsigned long long)f->ino);
				a.r.unreachable_dirs++;
			}
		} else if (f->links != f->nlink) {
			LOG_WARN("meta", "fsck: nlink mismatch: ino=%llu nlink=%u dentries=%u",
				 (unsigned long long)f->ino, f->nlink, f->links);
			a.r.nlink_mismatch++;
		}
	}
	for (size_t i = 0; i < nchunks; i++) {
		struct fsck_ino *f = fsck_find(&a, chunks[i].ino);
		chunks[i].in_gc = f && f->in_gc;
		chunks[i].orphan = !f;
		if (!f) {
			LOG_WARN("meta", "fsck: orphan chunk: ino=%llu index=%u",
				 (unsigned long long)chunks[i].ino, chunks[i].index);
			a.r.orphan_chunks++;
		}
	}
	*out = a.r;
	free(a.v);
	return 0;
}
