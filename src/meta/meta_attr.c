/* meta_attr.c - setattr (incl. truncate), directory layouts and xattrs.
 *
 * Truncate runs in three steps because storage is not transactional with
 * the KV store: (1) a read-only txn checks the caller may write the file
 * and fetches its layout (and, when writers may have data meta has not
 * heard of, storage's end of data: trunc_storage_end); (2) chunks past
 * the new length are removed and the new last chunk shortened on every
 * chain of the layout; (3) the setattr txn writes the size and bumps
 * truncate_ver (invalidating length reports made under the old version).
 * If (2) fails nothing is committed and the caller sees the storage
 * error; a crash between (2) and (3) leaves the old length over shortened
 * data, which reads as zeros: the same outcome 3FS's client-driven
 * truncate accepts.
 *
 * Late cuts. A client resends a truncate whose answer is slow, to this
 * instance or another; each run that finds it not yet applied (the
 * idempotency record is written with the size, after the cut) cuts, and
 * the first run's cut may still be on its way to a chain's head (a
 * stalled instance, a slow network) when a later run has answered and
 * the client has written past the cut. So every run sends its cuts under
 * one storage exactly-once key made from the client's request
 * (meta_cut_key; a channel per request and kind: meta_storage.h), and the
 * head answers the late one from its cache instead of cutting
 * (craq_write.c "Late cuts", which also says where that cache ends). An
 * open's or create's O_TRUNC cuts under the open's request and commits
 * the size under a record of its own (meta_otrunc_req): a late run finds
 * it applied and does not set 0 over what was written since. An untracked
 * truncate (no request, or seq 0; the mount's in-process instance runs
 * none: it has no storage) uses the storage client's own key: no client
 * resends it under a name another instance would know.
 *
 * Xattrs live under XATR + ino + name, one record each, so set/remove are
 * single-key writes; the inode is rewritten only for its ctime.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/status.h"
#include "common/wire.h"
#include "meta/acl.h"
#include "meta/meta_int.h"

/* ---- setattr ----
 *
 * Set-id bits follow Linux: chmod by a non-root caller outside the file's
 * group drops S_ISGID; chown of a non-directory drops S_ISUID and, with
 * group-execute, S_ISGID; a write or truncate by a caller without
 * CAP_FSETID drops them (META_SET_KILL_SUIDGID, sent by the client, which
 * sees the writes). The sticky bit on a file is kept, as Linux does. */

struct setattr_arg {
	meta_ctx *m;
	const struct meta_cred *c;
	const struct meta_req *rq;
	uint64_t ino;
	const struct meta_setattr *sa;
	int expect_idata;          /* SIZE: the storage step saw an inline file (skipped) */
	uint64_t stored_end;       /* SIZE: the data's end on storage before the cut
	                            * (when asked: trunc_storage_end), else 0 */
	uint8_t *scratch;          /* SIZE of an inline file: META_IDATA_MAX bytes */
	uint64_t session;          /* an O_TRUNC's: its open's session, which must
	                            * still be there when the size commits */
	uint64_t stored_after;     /* SIZE of a resent O_TRUNC: the data's end on
	                            * storage after the cut (meta_otrunc_run) */
	uint64_t answered;         /* out: a replay's record's session */
	struct meta_inode in;
};

static int setattr_apply(struct setattr_arg *a, int64_t now)
{
	const struct meta_setattr *sa = a->sa;
	const struct meta_cred *c = a->c;
	struct meta_inode *in = &a->in;
	int owner = c->uid == 0 || c->uid == in->uid;
	int rc;

	if (sa->valid & META_SET_MODE) {
		if (!owner)
			return -EPERM;
		in->mode = sa->mode & 07777;
		if (c->uid != 0 && !meta_in_group(c, in->gid))
			in->mode &= ~02000u;
	}
	if ((sa->valid & META_SET_KILL_SUIDGID) && in->type == META_T_FILE && c->uid != 0 &&
	    (in->mode & 06000)) {
		if (!(sa->valid & META_SET_FD_WRITE) && !owner && (rc = meta_may(in, c, 2)))
			return rc;
		in->mode &= ~04000u;
		if ((in->mode & 02010) == 02010 || !meta_in_group(c, in->gid))
			in->mode &= ~02000u;
	}
	if (sa->valid & (META_SET_UID | META_SET_GID)) {
		uint32_t uid = (sa->valid & META_SET_UID) ? sa->uid : in->uid;
		uint32_t gid = (sa->valid & META_SET_GID) ? sa->gid : in->gid;
		if (uid != in->uid && c->uid != 0)
			return -EPERM;
		if (gid != in->gid && c->uid != 0 &&
		    !(c->uid == in->uid && meta_in_group(c, gid)))
			return -EPERM;
		if ((uid != in->uid || gid != in->gid) && in->type != META_T_DIR) {
			in->mode &= ~04000u;
			if (in->mode & 0010)
				in->mode &= ~02000u;
		}
		in->uid = uid;
		in->gid = gid;
	}
	if (sa->valid & (META_SET_ATIME | META_SET_MTIME | META_SET_CTIME)) {
		if (!owner)
			return -EPERM;
	} else if (sa->valid & (META_SET_ATIME_NOW | META_SET_MTIME_NOW)) {
		if (!owner && (rc = meta_may(in, c, 2)))
			return rc;
	}
	if (sa->valid & META_SET_ATIME)
		in->atime = sa->atime;
	if (sa->valid & META_SET_ATIME_NOW)
		in->atime = now;
	if (sa->valid & META_SET_MTIME)
		in->mtime = sa->mtime;
	if (sa->valid & META_SET_MTIME_NOW)
		in->mtime = now;
	if (sa->valid & META_SET_SIZE) {
		if (in->type == META_T_DIR)
			return -EISDIR;
		if (in->type != META_T_FILE)
			return -EINVAL;
		if (!(sa->valid & META_SET_FD_WRITE) && (rc = meta_may(in, c, 2)))
			return rc;
		/* A cut voids length reports made before it: past the
		 * stored size, and past unreported data that was on
		 * storage (the writer's report would regrow the file over
		 * the removed chunks as zeros). */
		if (sa->size < in->size || sa->size < a->stored_end)
			in->truncate_ver++;
		in->size = sa->size > a->stored_after ? sa->size : a->stored_after;
		in->chains_used = meta_chains_hint(in, in->size);
		if (!(sa->valid & META_SET_MTIME))
			in->mtime = now;
	}
	in->ctime = (sa->valid & META_SET_CTIME) ? sa->ctime : now;
	return 0;
}

static int setattr_body(kv_txn *t, void *arg)
{
	struct setattr_arg *a = arg;
	struct meta_idem_rec rec;
	int rc = meta_idem_replay(t, a->rq, META_OP_SETATTR, a->ino, &rec, &a->in);
	a->answered = rc == 1 ? rec.aux : 0;
	/* An O_TRUNC's record of another inode: a create's run that went
	 * afresh after an undo (meta_otrunc_undo) made or opened another
	 * file at the name. Neither its session nor this inode is this run's
	 * answer: a failover error, the client's resend replays the
	 * create's record. */
	if (rc == 1 && a->session && rec.ino && rec.ino != a->ino)
		return -CFS_ETIMEDOUT;
	if (rc)
		return rc < 0 ? rc : 0;
	if ((rc = meta_get_inode(t, a->ino, 0, &a->in)))
		return rc;
	/* Another run of the open failed its truncate and took the session
	 * (meta_otrunc_undo): this run's answer would hand the client a
	 * session meta no longer has. A failover error that kv_run does not
	 * retry (-CFS_EUNAVAIL it would): the client's resend opens afresh.
	 * Conflict read: the undo commits first or aborts us. */
	if (a->session && a->rq && a->rq->seq) {
		struct meta_key k;
		struct kv_slice v;
		meta_key_session(&k, a->ino, a->rq->client, a->session);
		if ((rc = kv_get(t, kv_mem(k.b, k.n), 0, &v)) <= 0)
			return rc ? rc : -CFS_ETIMEDOUT;
	}
	/* The file went from inline to chunks after the storage step skipped
	 * it: start over with that step (meta_setattr). */
	if ((a->sa->valid & META_SET_SIZE) && a->in.idata != a->expect_idata)
		return -EAGAIN;
	if ((rc = setattr_apply(a, meta_now(a->m))))
		return rc;
	if ((a->sa->valid & META_SET_SIZE) && a->in.idata) {
		if (a->sa->size > a->m->o.idata_max)
			return -CFS_ENOTINLINE; /* the client converts, then retries */
		if (!a->scratch && !(a->scratch = malloc(META_IDATA_MAX)))
			return -ENOMEM;
		if ((rc = meta_idata_resize(t, a->ino, a->sa->size, a->scratch)))
			return rc;
	}
	if ((a->sa->valid & META_SET_MODE) && (rc = meta_acl_chmod_txn(t, &a->in)))
		return rc;
	if ((rc = meta_put_inode(t, &a->in)))
		return rc;
	/* An explicit mtime on a directory replaces the entry-change time. */
	if (a->in.type == META_T_DIR && (a->sa->valid & META_SET_MTIME) &&
	    (rc = meta_dir_time_clear(t, a->ino)))
		return rc;
	/* an O_TRUNC's record names the session its open answers: a run of
	 * the open that replayed another session, which an undo took since,
	 * answers this one (meta_otrunc_run.answered) */
	if ((rc = meta_idem_put(a->m, t, a->rq, META_OP_SETATTR, 0, a->ino, a->session)))
		return rc;
	return meta_dir_stat(t, &a->in);
}

/* Removes chunks past SIZE and shortens the one it ends in, on every chain
 * of the layout (chains_used is only a hint; truncation must be complete). */
static int truncate_storage(meta_ctx *m, const struct meta_inode *in, uint64_t size,
                            const struct meta_cut_key *key)
{
	const struct meta_storage *s = &m->o.storage;
	const struct meta_layout *l = &in->layout;
	uint32_t perm[META_MAX_STRIPE];
	uint64_t first = (size + l->chunk_size - 1) / l->chunk_size;
	if (first > UINT32_MAX)
		return -EFBIG;
	if (!s->remove_chunks || !s->truncate_chunk)
		return -EOPNOTSUPP;
	for (uint32_t i = 0; i < l->nchains; i++) {
		int rc = s->remove_chunks(s->arg, l->chains[i], in->ino, (uint32_t)first, key);
		if (rc < 0) {
			LOG_WARN("meta", "truncate: remove chunks failed: ino=%llu chain=%u: %s",
				 (unsigned long long)in->ino, l->chains[i], cfs_strerror(rc));
			return rc;
		}
	}
	if (size % l->chunk_size) {
		uint32_t idx = (uint32_t)(size / l->chunk_size);
		meta_layout_perm(l->seed, l->stripe, perm);
		int rc = s->truncate_chunk(s->arg, meta_layout_chain(l, perm, idx), in->ino, idx,
		                           (uint32_t)(size % l->chunk_size), key);
		if (rc < 0) {
			LOG_WARN("meta", "truncate: shorten chunk failed: ino=%llu index=%u: %s",
				 (unsigned long long)in->ino, idx, cfs_strerror(rc));
			return rc;
		}
	}
	return 0;
}

struct trunc_check_arg {
	const struct meta_cred *c;
	const struct meta_req *rq;
	uint64_t ino;
	int fd_write;
	int applied;               /* RQ was applied before: replay, cut nothing */
	int writers;               /* the file has write sessions of other clients */
	struct meta_inode in;
};

/* *OTHERS 1 when file INO has a write session of a client other than
 * RQ's (any, without RQ): the caller reported its own length first (the
 * mount does before a truncate), others may not have. Snapshot read. */
static int other_writers(kv_txn *t, uint64_t ino, const struct meta_req *rq, int *others)
{
	struct meta_key b, e;
	struct kv_range r;
	*others = 0;
	meta_key_session_range(&b, &e, ino);
	int rc = kv_get_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n), 0, 1, 0, &r);
	if (rc < 0)
		return rc;
	for (int i = 0; i < r.n && !*others; i++) {
		const uint8_t *key = r.kvs[i].key.p;
		/* SESS + ino + client + session (schema.h) */
		*others = !rq || r.kvs[i].key.n != 28 || wire_load_be64(key + 12) != rq->client;
	}
	return 0;
}

static int trunc_check_body(kv_txn *t, void *arg)
{
	struct trunc_check_arg *a = arg;
	struct meta_idem_rec rec;
	/* A retry of a truncate that committed (its reply lost) must not cut
	 * again: since the first cut others may have written past the size
	 * and reported it, and a second cut would remove those chunks while
	 * the txn, a replay, keeps the size that covers them. */
	int rc = meta_idem_check(t, a->rq, META_OP_SETATTR, &rec);
	a->applied = rc == 1;
	if (rc)
		return rc < 0 ? rc : 0;
	rc = meta_get_inode(t, a->ino, 1, &a->in);
	if (rc)
		return rc;
	if (a->in.type == META_T_DIR)
		return -EISDIR;
	if (a->in.type != META_T_FILE)
		return -EINVAL;
	if ((rc = a->fd_write ? 0 : meta_may(&a->in, a->c, 2)))
		return rc;
	return other_writers(t, a->ino, a->rq, &a->writers);
}

/* What storage holds of file IN before a cut to SIZE, into *END, when that
 * can pass what meta knows: a writer (a session) may have written past the
 * size it reported. A cut at or past the stored size does not bump
 * truncate_ver (nothing of what meta knows goes), so without this a
 * writer's report sent after the cut, under the old truncate_ver, would
 * regrow the file over the chunks the cut removed, as zeros. Without
 * writers every length is in the inode (close reports it): no query, 0.
 * 0 or the query's error (the truncate fails: nothing is cut). */
static int trunc_storage_end(meta_ctx *m, const struct trunc_check_arg *ta, uint64_t size,
			     uint64_t *end)
{
	*end = 0;
	if (!ta->writers || size < ta->in.size)
		return 0;
	return meta_query_storage(m, &ta->in, 1, end);
}

int meta_setattr(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		 uint64_t ino, const struct meta_setattr *sa, struct meta_inode *out)
{
	struct meta_cut_key k = {rq ? rq->client : 0, rq ? rq->seq : 0};
	return meta_setattr_cut(m, c, rq, ino, sa, rq && rq->seq ? &k : NULL, NULL, out);
}

int meta_setattr_cut(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
                     uint64_t ino, const struct meta_setattr *sa, const struct meta_cut_key *ckey,
                     struct meta_otrunc_run *ot, struct meta_inode *out)
{
	int rc;
	struct setattr_arg *a = malloc(sizeof(*a));
	if (!a)
		return -ENOMEM;
	*a = (struct setattr_arg){
	    .m = m, .c = c, .rq = rq, .ino = ino, .sa = sa, .session = ot ? ot->session : 0};
	/* Inline files (meta_idata.c) have no chunks to cut; one that turns
	 * chunked meanwhile makes the txn answer -EAGAIN: redo both steps
	 * (a file converts once, so this loops at most twice). */
	for (int attempt = 0; attempt < 3; attempt++) {
		if (sa->valid & META_SET_SIZE) {
			struct trunc_check_arg *ta = malloc(sizeof(*ta));
			if (!ta) {
				rc = -ENOMEM;
				break;
			}
			ta->c = c;
			ta->rq = rq;
			ta->ino = ino;
			ta->fd_write = (sa->valid & META_SET_FD_WRITE) != 0;
			rc = meta_run_ro(m, trunc_check_body, ta);
			/* cut: not a replay (whose txn only answers) */
			int cut = rc == 0 && !ta->applied;
			if (cut && sa->size / ta->in.layout.chunk_size > UINT32_MAX)
				rc = -EFBIG;
			a->expect_idata = cut && ta->in.idata;
			a->stored_end = 0;
			if (rc == 0 && cut && !ta->in.idata)
				rc = trunc_storage_end(m, ta, sa->size, &a->stored_end);
			if (rc == 0 && cut && !ta->in.idata)
				rc = truncate_storage(m, &ta->in, sa->size, ckey);
			a->stored_after = 0;
			if (rc == 0 && cut && !ta->in.idata && ot && ot->resent)
				rc = meta_query_storage(m, &ta->in, 1, &a->stored_after);
			free(ta);
			if (rc)
				break;
		}
		if (rq && rq->seq) {
			rc = meta_run_rw(m, rq, setattr_body, a);
		} else {
			/* Untracked setattr is still safe to retry after a
			 * maybe-commit: it sets absolute values (only
			 * truncate_ver may step twice). */
			struct kv_run_opts o = { .idempotent = 1, .max_retries = 40 };
			rc = meta_run(m, &o, setattr_body, a);
		}
		if (rc != -EAGAIN || !(sa->valid & META_SET_SIZE))
			break;
	}
	if (rc == 0 && out)
		*out = a->in;
	if (ot)
		ot->answered = rc == 0 ? a->answered : 0;
	free(a->scratch);
	free(a);
	return rc;
}

/* ---- directory default layout ---- */

struct layout_arg {
	meta_ctx *m;
	const struct meta_cred *c;
	const struct meta_req *rq;
	uint64_t dir;
	struct meta_layout l;
	struct meta_inode in;
};

static int layout_body(kv_txn *t, void *arg)
{
	struct layout_arg *a = arg;
	struct meta_idem_rec rec;
	int rc = meta_idem_check(t, a->rq, META_OP_SETLAYOUT, &rec);
	if (rc)
		return rc < 0 ? rc : 0;
	if ((rc = meta_get_inode(t, a->dir, 0, &a->in)))
		return rc;
	if (a->in.type != META_T_DIR)
		return -ENOTDIR;
	if (a->c->uid != 0 && a->c->uid != a->in.uid)
		return -EPERM;
	a->in.has_layout = 1;
	a->in.layout = a->l;
	a->in.ctime = meta_now(a->m);
	if ((rc = meta_put_inode(t, &a->in)))
		return rc;
	return meta_idem_put(a->m, t, a->rq, META_OP_SETLAYOUT, 0, a->dir, 0);
}

int meta_set_dir_layout(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
			uint64_t dir, uint32_t chunk_size, uint32_t stripe, uint32_t table_id,
			char *err, size_t errlen)
{
	struct layout_arg *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	*a = (struct layout_arg){ .m = m, .c = c, .rq = rq, .dir = dir };
	a->l.chunk_size = chunk_size;
	a->l.stripe = stripe;
	a->l.table_id = table_id;
	int rc = meta_layout_validate(&a->l, &m->o.chains, err, errlen);
	if (rc == 0)
		rc = meta_run_rw(m, rq, layout_body, a);
	free(a);
	return rc;
}

/* ---- xattrs ---- */

enum xns { XNS_USER, XNS_TRUSTED, XNS_SECURITY, XNS_ACL_ACCESS, XNS_ACL_DEFAULT };

static int xattr_ns(struct meta_name name, enum xns *ns)
{
	static const struct { const char *p; size_t n; enum xns ns; } tab[] = {
		{ "user.", 5, XNS_USER },
		{ "trusted.", 8, XNS_TRUSTED },
		{ "security.", 9, XNS_SECURITY },
	};
	if (name.n > META_NAME_MAX)
		return -ERANGE;
	if (name.n == 0 || memchr(name.p, 0, name.n))
		return -EINVAL;
	/* POSIX ACLs (acl.h): two exact names of the system namespace. */
	if (name.n == sizeof(META_ACL_ACCESS) - 1 && !memcmp(name.p, META_ACL_ACCESS, name.n)) {
		*ns = XNS_ACL_ACCESS;
		return 0;
	}
	if (name.n == sizeof(META_ACL_DEFAULT) - 1 && !memcmp(name.p, META_ACL_DEFAULT, name.n)) {
		*ns = XNS_ACL_DEFAULT;
		return 0;
	}
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		if (name.n > tab[i].n && memcmp(name.p, tab[i].p, tab[i].n) == 0) {
			*ns = tab[i].ns;
			return 0;
		}
	}
	return -EOPNOTSUPP;
}

/* Linux xattr_permission: trusted.* is root's; user.* exists only on files
 * and directories and on sticky directories only the owner may write it. */
static int xattr_perm(const struct meta_inode *in, const struct meta_cred *c, enum xns ns,
		      int write)
{
	if (ns == XNS_TRUSTED)
		return c->uid == 0 ? 0 : -EPERM;
	if (ns == XNS_ACL_ACCESS || ns == XNS_ACL_DEFAULT) /* as chmod; anyone reads */
		return !write || c->uid == 0 || c->uid == in->uid ? 0 : -EPERM;
	if (ns == XNS_USER) {
		if (in->type != META_T_FILE && in->type != META_T_DIR)
			return write ? -EPERM : -ENODATA;
		if (write && in->type == META_T_DIR && (in->mode & 01000) && c->uid != 0 &&
		    c->uid != in->uid)
			return -EPERM;
	}
	return meta_may(in, c, write ? 2 : 4);
}

struct xattr_arg {
	meta_ctx *m;
	const struct meta_cred *c;
	const struct meta_req *rq;
	uint64_t ino;
	struct meta_name name;
	enum xns ns;
	const void *val;
	size_t len;
	unsigned flags;
	int remove;
	void *buf;
	size_t cap;
	int result;
	struct meta_inode in;
};

static int setx_body(kv_txn *t, void *arg)
{
	struct xattr_arg *a = arg;
	struct meta_idem_rec rec;
	struct meta_key k;
	struct kv_slice v;
	uint32_t op = a->remove ? META_OP_REMOVEXATTR : META_OP_SETXATTR;
	int rc = meta_idem_check(t, a->rq, op, &rec);
	if (rc)
		return rc < 0 ? rc : 0;
	if ((rc = meta_get_inode(t, a->ino, 0, &a->in)))
		return rc;
	if ((rc = xattr_perm(&a->in, a->c, a->ns, 1)))
		return rc;
	meta_key_xattr(&k, a->ino, a->name.p, a->name.n);
	int exists = kv_get(t, kv_mem(k.b, k.n), 0, &v);
	if (exists < 0)
		return exists;
	if (a->ns == XNS_ACL_ACCESS || a->ns == XNS_ACL_DEFAULT) {
		if ((rc = meta_acl_setx(a->m, t, &a->in, a->ns == XNS_ACL_DEFAULT, &k, exists,
					a->remove ? NULL : a->val, a->len)))
			return rc;
		/* mounts learn a default ACL change with the directory's names */
		if (a->ns == XNS_ACL_DEFAULT && a->in.type == META_T_DIR &&
		    (rc = meta_dir_bump(a->m, t, a->ino)))
			return rc;
		goto done;
	}
	if (a->remove) {
		if (!exists)
			return -ENODATA;
		rc = kv_clear(t, kv_mem(k.b, k.n));
	} else {
		if (exists && (a->flags & META_XATTR_CREATE))
			return -EEXIST;
		if (!exists && (a->flags & META_XATTR_REPLACE))
			return -ENODATA;
		struct buf b = BUF_INIT;
		rc = meta_xattr_encode(a->val, a->len, &b);
		if (rc == 0)
			rc = kv_set(t, kv_mem(k.b, k.n), kv_mem(b.data, b.len));
		buf_fini(&b);
	}
	if (rc)
		return rc;
done:
	a->in.ctime = meta_now(a->m);
	if ((rc = meta_put_inode(t, &a->in)))
		return rc;
	return meta_idem_put(a->m, t, a->rq, op, 0, a->ino, 0);
}

static int run_setx(struct xattr_arg *a)
{
	int rc = xattr_ns(a->name, &a->ns);
	if (rc)
		return rc;
	struct xattr_arg *h = malloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	*h = *a;
	rc = meta_run_rw(a->m, a->rq, setx_body, h);
	free(h);
	return rc;
}

int meta_setxattr(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		  uint64_t ino, struct meta_name name, const void *val, size_t len,
		  unsigned flags)
{
	if (len > META_XATTR_VALUE_MAX)
		return -E2BIG;
	if ((flags & ~3u) || flags == 3)
		return -EINVAL;
	struct xattr_arg a = { .m = m, .c = c, .rq = rq, .ino = ino, .name = name, .val = val,
			       .len = len, .flags = flags };
	return run_setx(&a);
}

int meta_removexattr(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		     uint64_t ino, struct meta_name name)
{
	struct xattr_arg a = { .m = m, .c = c, .rq = rq, .ino = ino, .name = name, .remove = 1 };
	return run_setx(&a);
}

static int getx_body(kv_txn *t, void *arg)
{
	struct xattr_arg *a = arg;
	struct meta_key k;
	struct kv_slice v;
	const uint8_t *val;
	uint32_t len;
	int rc = meta_get_inode(t, a->ino, 1, &a->in);
	if (rc)
		return rc;
	if ((rc = xattr_perm(&a->in, a->c, a->ns, 0)))
		return rc;
	meta_key_xattr(&k, a->ino, a->name.p, a->name.n);
	rc = kv_get(t, kv_mem(k.b, k.n), 1, &v);
	if (rc <= 0)
		return rc < 0 ? rc : -ENODATA;
	if ((rc = meta_xattr_decode(v.p, v.n, &val, &len)))
		return rc;
	a->result = (int)len;
	if (a->cap == 0)
		return 0;
	if (len > a->cap)
		return -ERANGE;
	memcpy(a->buf, val, len);
	return 0;
}

int meta_getxattr(meta_ctx *m, const struct meta_cred *c, uint64_t ino, struct meta_name name,
		  void *buf, size_t cap)
{
	struct xattr_arg *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	*a = (struct xattr_arg){ .m = m, .c = c, .ino = ino, .name = name, .buf = buf,
				 .cap = cap };
	int rc = xattr_ns(name, &a->ns);
	if (rc == 0)
		rc = meta_run_ro(m, getx_body, a);
	if (rc == 0)
		rc = a->result;
	free(a);
	return rc;
}

static int listx_body(kv_txn *t, void *arg)
{
	struct xattr_arg *a = arg;
	struct meta_key b, e;
	struct kv_range r;
	size_t total = 0;
	int rc = meta_get_inode(t, a->ino, 1, &a->in);
	if (rc)
		return rc;
	meta_key_xattr_range(&b, &e, a->ino);
	rc = kv_get_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n), 0, 1, 0, &r);
	if (rc < 0)
		return rc;
	for (int i = 0; i < r.n; i++) {
		const char *name = (const char *)r.kvs[i].key.p + 12;
		size_t n = r.kvs[i].key.n - 12;
		if (a->c->uid != 0 && n >= 8 && memcmp(name, "trusted.", 8) == 0)
			continue;
		if (a->cap) {
			if (total + n + 1 > a->cap)
				return -ERANGE;
			memcpy((char *)a->buf + total, name, n);
			((char *)a->buf)[total + n] = 0;
		}
		total += n + 1;
	}
	a->result = (int)total;
	return 0;
}

int meta_listxattr(meta_ctx *m, const struct meta_cred *c, uint64_t ino, char *buf, size_t cap)
{
	struct xattr_arg *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	*a = (struct xattr_arg){ .m = m, .c = c, .ino = ino, .buf = buf, .cap = cap };
	int rc = meta_run_ro(m, listx_body, a);
	if (rc == 0)
		rc = a->result;
	free(a);
	return rc;
}
