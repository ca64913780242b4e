/* meta_ns.c - namespace operations: lookup, create/mkdir/symlink, link,
 * unlink, rmdir, rename, readdir, readlink.
 *
 * Each operation is one transaction body (run by kv_run, possibly several
 * times: bodies reset their outputs and keep no state between attempts).
 * Conflict discipline, after 3FS:
 *   - the parent directory inode is read without the snapshot flag (so it
 *     is in the read-conflict set: a concurrent rmdir, chmod or rename of
 *     the parent aborts us) but never written, so entry operations in one
 *     directory do not conflict with each other; what they change in the
 *     parent (its mtime/ctime, and its link count when the entry is a
 *     directory) goes to the parent's counters with commutative KV writes
 *     (meta_dir_changed: an atomic max and an atomic add, schema.h DSTA),
 *     which add no read conflict on lmdb (on etcd they do: etcd has no
 *     server-side add or max, so it compares the key's revision; the
 *     counters are sharded there so that such conflicts are rare);
 *   - the dentry key is read without the snapshot flag, so two creates of
 *     one name serialize;
 *   - the target inode is read and written when its nlink or parent field
 *     changes (link, unlink, rename);
 *   - rename of a directory to another parent reads every ancestor of the
 *     destination (conflict reads) and refuses if the source is among them.
 *     A racing rename that moves one of those ancestors writes that
 *     ancestor's inode (its parent field), so one of the two aborts and
 *     retries: no cycle can commit.
 * Every transaction stays within KV_MAX_WRITES (at most 10 writes here, plus
 * 2 when meta_idem_put raises the client's floor) and KV_MAX_READ_CONFLICTS
 * (at most 10 + META_MAX_DEPTH reads, plus 1 of the floor when it moves).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/status.h"
#include "meta/meta_int.h"

/* ---- lookup, getattr, readlink ---- */

struct lookup_arg {
	const struct meta_cred *c;
	uint64_t parent, ino;
	struct meta_name name;
	struct meta_inode *out;
};

static int lookup_body(kv_txn *t, void *arg)
{
	struct lookup_arg *a = arg;
	struct meta_inode *dir = a->out;
	struct meta_dentry d;
	int rc = meta_get_inode(t, a->parent, 1, dir);
	if (rc)
		return rc;
	if (dir->type != META_T_DIR)
		return -ENOTDIR;
	if ((rc = meta_may(dir, a->c, 1)))
		return rc;
	if (a->name.n == 1 && a->name.p[0] == '.')
		return meta_dir_stat(t, a->out);
	if (a->name.n == 2 && a->name.p[0] == '.' && a->name.p[1] == '.') {
		rc = meta_get_inode(t, dir->parent, 1, a->out);
	} else {
		rc = meta_get_dentry(t, a->parent, a->name, 1, &d);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ENOENT;
		rc = meta_get_inode(t, d.ino, 1, a->out);
	}
	return rc ? rc : meta_dir_stat(t, a->out);
}

int meta_lookup(meta_ctx *m, const struct meta_cred *c, uint64_t parent, struct meta_name name,
		struct meta_inode *out)
{
	int rc = meta_check_name(name, META_NAME_LOOKUP);
	if (rc)
		return rc;
	struct lookup_arg a = { .c = c, .parent = parent, .name = name, .out = out };
	return meta_run_ro(m, lookup_body, &a);
}

struct getattr_arg {
	uint64_t ino;
	struct meta_inode *out;
};

static int getattr_body(kv_txn *t, void *arg)
{
	struct getattr_arg *a = arg;
	int rc = meta_get_inode(t, a->ino, 1, a->out);
	return rc ? rc : meta_dir_stat(t, a->out);
}

int meta_getattr(meta_ctx *m, uint64_t ino, struct meta_inode *out)
{
	struct getattr_arg a = { ino, out };
	return meta_run_ro(m, getattr_body, &a);
}

struct access_arg {
	const struct meta_cred *c;
	uint64_t ino;
	int mask;
	struct meta_inode in;
};

static int access_body(kv_txn *t, void *arg)
{
	struct access_arg *a = arg;
	int rc = meta_get_inode(t, a->ino, 1, &a->in);
	return rc ? rc : meta_may(&a->in, a->c, a->mask);
}

int meta_access(meta_ctx *m, const struct meta_cred *c, uint64_t ino, int mask)
{
	if (mask & ~7)
		return -EINVAL;
	struct access_arg *a = malloc(sizeof(*a));
	if (!a)
		return -ENOMEM;
	*a = (struct access_arg){ .c = c, .ino = ino, .mask = mask };
	int rc = meta_run_ro(m, access_body, a);
	free(a);
	return rc;
}

int meta_readlink(meta_ctx *m, uint64_t ino, char *buf, size_t cap)
{
	struct meta_inode *in = malloc(sizeof(*in));
	if (!in)
		return -ENOMEM;
	int rc = meta_getattr(m, ino, in);
	if (rc == 0 && in->type != META_T_SYMLINK)
		rc = -EINVAL;
	if (rc == 0) {
		size_t n = in->target_len < cap ? in->target_len : cap;
		memcpy(buf, in->target, n);
		if (n < cap)
			buf[n] = 0;
		rc = (int)in->target_len;
	}
	free(in);
	return rc;
}

/* ---- create, mkdir, symlink ---- */

struct new_arg {
	meta_ctx *m;
	const struct meta_cred *c;
	const struct meta_req *rq;
	uint64_t parent;
	struct meta_name name;
	uint32_t mode;
	unsigned flags;
	uint8_t type;
	struct meta_name target;
	uint64_t rdev;          /* special files */
	uint64_t ino;           /* preallocated id for a new inode */
	struct meta_inode *out; /* result (also scratch) */
	struct meta_inode *dir; /* scratch: the parent */
	uint64_t session;       /* out */
	uint64_t existing;      /* out: the file opened instead of created, or 0 */
	int replayed;           /* out: the request's record was there (a resend) */
	uint64_t made;          /* the session an earlier attempt of this call made */
	int want_dir;           /* fold the parent's counters into dir at the end */
	int dir_ok;             /* out: dir holds the parent as this txn leaves it */
};

static uint32_t new_op(uint8_t type)
{
	return type == META_T_DIR ? META_OP_MKDIR :
	       type == META_T_SYMLINK ? META_OP_SYMLINK :
	       meta_type_special(type) ? META_OP_MKNOD : META_OP_CREATE;
}

static int put_session(meta_ctx *m, kv_txn *t, uint64_t ino, uint64_t client,
		       uint64_t *session)
{
	struct meta_key k;
	struct buf b = BUF_INIT;
	struct meta_session_rec s = { .client = client, .opened = meta_now(m) };
	do
		s.session = meta_random(m);
	while (s.session == 0);
	meta_key_session(&k, ino, client, s.session);
	int rc = meta_session_encode(&s, &b);
	if (rc == 0)
		rc = kv_set(t, kv_mem(k.b, k.n), kv_mem(b.data, b.len));
	buf_fini(&b);
	if (rc == 0)
		*session = s.session;
	return rc;
}

/* The parent's attributes for meta_create_dir / meta_unlink_dir: DIR (the
 * parent as the body read it, with a conflict) with its entry counters
 * folded in by the snapshot read of the body's meta_dir_changed_stat, as
 * they stand after the txn's own writes (parent_dir returns DIR to fold
 * into, or NULL when not WANTed: the KV cannot tell whether the commit
 * was alone). That is the committed state only if nothing else commits
 * between the snapshot and this txn (kv_run_stats.alone), which the
 * caller checks. The body sets *OK only at its successful end. */
static struct meta_inode *parent_dir(int want, struct meta_inode *dir)
{
	return want ? dir : NULL;
}

/* *OUT for meta_create_dir / meta_unlink_dir after a committed change:
 * IN_TXN when the body left it valid (OK) and the commit was alone, else
 * read now. */
static void parent_reply(meta_ctx *m, uint64_t parent, int ok, int alone,
			 const struct meta_inode *in_txn, struct meta_inode *out)
{
	if (ok && alone) {
		meta_inode_copy(out, in_txn); /* not all 5 KiB: ~600 instructions */
		return;
	}
	if (meta_getattr(m, parent, out) < 0) {
		memset(out, 0, sizeof(*out));
		out->ino = 0;
	}
}

/* Opens an existing inode found by create without O_EXCL. */
static int new_open_existing(struct new_arg *a, kv_txn *t, const struct meta_dentry *d)
{
	int rc;
	if (a->type != META_T_FILE)
		return -EEXIST;
	if (d->type == META_T_DIR)
		return -EISDIR;
	if (d->type == META_T_SYMLINK)
		return -ELOOP;
	if ((rc = meta_get_inode(t, d->ino, 0, a->out)))
		return rc;
	/* both for O_RDWR, as meta_open's check (the kernel checked nothing:
	 * it sent CREATE for a name it believed absent) */
	int mask = ((a->flags & META_O_READ) ? 4 : 0) | ((a->flags & META_O_WRITE) ? 2 : 0);
	if ((rc = meta_may(a->out, a->c, mask ? mask : 4)))
		return rc;
	if (a->flags & META_O_WRITE)
		rc = put_session(a->m, t, d->ino, a->rq ? a->rq->client : 0, &a->session);
	return rc;
}

static int new_body(kv_txn *t, void *arg)
{
	struct new_arg *a = arg;
	struct meta_inode *dir = a->dir, *in = a->out;
	struct meta_idem_rec rec;
	struct meta_dentry d;
	int64_t now = meta_now(a->m);
	uint32_t op = new_op(a->type);

	a->session = 0;
	a->existing = 0;
	a->dir_ok = 0;
	int rc = meta_idem_check(t, a->rq, op, &rec);
	/* sticky: a retry of this body can find the record an earlier
	 * attempt wrote over the one it found */
	if (rc == 1 && !(a->made && rec.aux == a->made))
		a->replayed = 1;
	/* a run undone (meta_otrunc_undo: a write open's record with no
	 * session): this one goes afresh, as a resend */
	uint64_t undone = 0;
	if (rc == 1 && rec.aux == 0 && a->type == META_T_FILE && (a->flags & META_O_WRITE)) {
		undone = rec.ino;
		rc = 0;
	}
	if (rc < 0)
		return rc;
	if (rc == 1) {
		a->session = rec.aux;
		/* Not the inode this call would create: the first attempt
		 * opened an existing file (or, for a resend, a create of an
		 * earlier call made it: truncating it again is an O_TRUNC a
		 * little later, still within this call). */
		if (rec.ino != a->ino)
			a->existing = rec.ino;
		rc = meta_get_inode(t, rec.ino, 1, in);
		return rc == -ENOENT ? 0 : rc;
	}
	rc = meta_parent_dentry(t, a->parent, a->c, 1, a->name, dir, &d);
	if (rc < 0)
		return rc;
	if (rc == 1) {
		if (a->flags & META_O_EXCL || a->type != META_T_FILE)
			return -EEXIST;
		/* The undone run's cuts (some made) went to UNDONE under this
		 * request's key, which the heads now answer from their cache
		 * without cutting: another file at the name (renamed over it,
		 * or made anew) would keep its bytes on those chains, under a
		 * size of 0 or, for a resend, that covers them. A request cuts
		 * one inode (meta_cut_storage_key): refused, so the caller
		 * sends a new request (the kernel retries an open's -ESTALE
		 * once with a fresh lookup), whose key is its own. */
		if (undone && (a->flags & META_O_TRUNC) && d.ino != undone)
			return -ESTALE;
		rc = new_open_existing(a, t, &d);
		a->made = a->session;
		if (rc == 0)
			rc = meta_idem_put(a->m, t, a->rq, op, 0, d.ino, a->session);
		if (rc == 0)
			a->existing = d.ino;
		return rc;
	}
	if ((rc = meta_may(dir, a->c, 3)))
		return rc;

	memset(in, 0, offsetof(struct meta_inode, layout));
	in->has_layout = 0;
	in->target_len = 0;
	in->target[0] = 0;
	in->rdev = 0;
	in->ino = a->ino;
	in->type = a->type;
	in->mode = a->mode & 07777;
	in->uid = a->c->uid;
	in->gid = a->c->gid;
	in->atime = in->mtime = in->ctime = now;
	if (dir->mode & 02000) {
		/* setgid directory: children take its group, subdirectories
		 * also the bit */
		in->gid = dir->gid;
		if (a->type == META_T_DIR)
			in->mode |= 02000;
	}
	if (a->type != META_T_DIR && (in->mode & 02000) && a->c->uid != 0 &&
	    !meta_in_group(a->c, in->gid))
		in->mode &= ~02000u; /* as Linux inode_init_owner */
	const struct meta_layout *def = dir->has_layout ? &dir->layout : &a->m->o.root_layout;
	switch (a->type) {
	case META_T_DIR:
		in->nlink = 2;
		in->parent = a->parent;
		in->has_layout = 1;
		in->layout = *def;
		in->layout.nchains = 0;
		break;
	case META_T_SYMLINK:
		in->nlink = 1;
		in->mode = 0777;
		in->size = a->target.n;
		memcpy(in->target, a->target.p, a->target.n);
		in->target[a->target.n] = 0;
		in->target_len = (uint32_t)a->target.n;
		break;
	case META_T_FIFO:
	case META_T_CHR:
	case META_T_BLK:
	case META_T_SOCK:
		in->nlink = 1;
		if (a->type == META_T_CHR || a->type == META_T_BLK)
			in->rdev = a->rdev;
		break;
	default: {
		char err[128];
		uint64_t cursor = atomic_fetch_add_explicit(&a->m->chain_cursor, def->stripe,
							    memory_order_relaxed);
		in->nlink = 1;
		in->has_layout = 1;
		rc = meta_layout_assign(def, &a->m->o.chains, cursor, meta_random(a->m),
					&in->layout, err, sizeof(err));
		if (rc) {
			LOG_WARN("meta", "create: bad layout: parent=%llu: %s",
				 (unsigned long long)a->parent, err);
			return rc;
		}
		in->chains_used = 1;
		/* Inline data only for clients that handle it (meta_idata.c). */
		in->idata = a->type == META_T_FILE && (a->flags & META_O_IDATA) &&
			    a->m->o.idata_max > 0;
		break;
	}
	}
	if ((rc = meta_put_inode(t, in)))
		return rc;
	if ((rc = meta_put_dentry(t, a->parent, a->name, in->ino, in->type)))
		return rc;
	if ((rc = meta_dir_changed_stat(a->m, t, a->parent, now, a->type == META_T_DIR,
					parent_dir(a->want_dir, dir))))
		return rc;
	if (a->type == META_T_FILE && (a->flags & META_O_WRITE) &&
	    (rc = put_session(a->m, t, in->ino, a->rq ? a->rq->client : 0, &a->session)))
		return rc;
	a->made = a->session;
	if ((rc = meta_idem_put(a->m, t, a->rq, op, 0, in->ino, a->session)))
		return rc;
	/* A file this request made is truncated already: its O_TRUNC's record
	 * says so. A later run of the request (a resend to another instance
	 * while this one's answer was slow) finds the file by the create's
	 * record, as if another client had made it (create_trunc), and would
	 * otherwise cut and set 0 over what the client wrote after this
	 * run's answer: cut chunks, or its size commit over bytes written
	 * after its cuts, left on storage past the size. */
	if (a->type == META_T_FILE && (a->flags & META_O_TRUNC) && (a->flags & META_O_WRITE) &&
	    !(a->flags & META_O_EXCL)) {
		struct meta_req trq = meta_otrunc_req(a->rq);
		if ((rc = meta_idem_put(a->m, t, &trq, META_OP_SETATTR, 0, in->ino, a->session)))
			return rc;
	}
	a->dir_ok = a->want_dir;
	return 0;
}

/* DIR: meta_create_dir's, or NULL. */
static int run_new(meta_ctx *m, struct new_arg *a, struct meta_inode *out,
		   struct meta_inode *dir)
{
	int rc = meta_check_name(a->name, META_NAME_NEW);
	if (rc)
		return rc;
	if ((rc = meta_alloc_ino(m, &a->ino)))
		return rc;
	/* The txn body builds the result in OUT itself (what OUT holds after
	 * a failure is unspecified), not in a copy: one 5 KiB inode record
	 * less to allocate and copy per create. DIR must stay untouched when
	 * the change fails (meta_create_dir), so the parent is read into a
	 * scratch record. Both on the stack, as run_remove's (not zeroed:
	 * the body fills them before any use): a heap pair of 5 KiB records
	 * took glibc's large-request path, malloc and free ~590 instructions
	 * per create (bench/history.md, mc28). */
	struct meta_inode scratch[2];
	int alone = 0;
	a->m = m;
	a->out = out ? out : &scratch[1];
	a->dir = &scratch[0];
	a->want_dir = dir && kv_reports_alone(m->kv);
	rc = meta_run_rw_alone(m, a->rq, new_body, a, &alone);
	if (rc == 0 && dir)
		parent_reply(m, a->parent, a->dir_ok, alone, a->dir, dir);
	return rc;
}

/* O_TRUNC of the file a create without O_EXCL found and opened (A's
 * existing, also on a replay whose record names an inode other than the
 * one this call would make): truncated as meta_open does, after the txn;
 * on failure the open is undone (meta_otrunc_undo). OUT (may be NULL)
 * gets the truncated inode. */
static int create_trunc(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
			struct new_arg *a, struct meta_inode *out)
{
	if (!a->existing || !(a->flags & META_O_TRUNC) || !(a->flags & META_O_WRITE) ||
	    (a->flags & META_O_EXCL))
		return 0;
	struct meta_setattr sa = { .valid = META_SET_SIZE, .size = 0 };
	/* by whom (its own session is no other writer: meta_setattr),
	 * tracked apart from the create, as meta_open's O_TRUNC */
	struct meta_req trq = meta_otrunc_req(rq);
	/* cuts under the create's key, as meta_open's O_TRUNC */
	struct meta_cut_key k = {rq ? rq->client : 0, rq ? rq->seq : 0};
	struct meta_otrunc_run ot = {a->session, a->replayed, 0};
	int rc = meta_setattr_cut(m, c, rq ? &trq : NULL, a->existing, &sa,
	                          rq && rq->seq ? &k : NULL, &ot, out);
	struct meta_inode now;
	if (rc && a->session &&
	    meta_otrunc_undo(m, rq, a->existing, a->session, &now, &ot.answered) == 1) {
		rc = 0;
		if (out)
			*out = now;
	}
	if (rc == 0 && ot.answered)
		a->session = ot.answered;
	return rc;
}

int meta_create(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		uint64_t parent, struct meta_name name, uint32_t mode, unsigned flags,
		struct meta_inode *out, uint64_t *session)
{
	/* read-only with O_TRUNC: a write session, as meta_open */
	if (flags & META_O_TRUNC)
		flags |= META_O_WRITE;
	struct new_arg a = { .c = c, .rq = rq, .parent = parent, .name = name, .mode = mode,
			     .flags = flags, .type = META_T_FILE };
	int rc = run_new(m, &a, out, NULL);
	if (rc == 0)
		rc = create_trunc(m, c, rq, &a, out);
	if (session)
		*session = rc == 0 ? a.session : 0;
	return rc;
}

int meta_create_dir(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		    uint64_t parent, struct meta_name name, uint32_t mode, unsigned flags,
		    struct meta_inode *out, uint64_t *session, struct meta_inode *dir)
{
	/* read-only with O_TRUNC: a write session, as meta_open */
	if (flags & META_O_TRUNC)
		flags |= META_O_WRITE;
	struct new_arg a = { .c = c, .rq = rq, .parent = parent, .name = name, .mode = mode,
			     .flags = flags, .type = META_T_FILE };
	int rc = run_new(m, &a, out, dir);
	if (rc == 0)
		rc = create_trunc(m, c, rq, &a, out);
	if (session)
		*session = rc == 0 ? a.session : 0;
	return rc;
}

int meta_mkdir(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
	       uint64_t parent, struct meta_name name, uint32_t mode, struct meta_inode *out)
{
	struct new_arg a = { .c = c, .rq = rq, .parent = parent, .name = name, .mode = mode,
			     .flags = META_O_EXCL, .type = META_T_DIR };
	return run_new(m, &a, out, NULL);
}

int meta_symlink(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		 uint64_t parent, struct meta_name name, struct meta_name target,
		 struct meta_inode *out)
{
	if (target.n == 0)
		return -ENOENT;
	if (target.n > META_SYMLINK_MAX)
		return -ENAMETOOLONG;
	if (memchr(target.p, 0, target.n))
		return -EINVAL;
	struct new_arg a = { .c = c, .rq = rq, .parent = parent, .name = name,
			     .flags = META_O_EXCL, .type = META_T_SYMLINK, .target = target };
	return run_new(m, &a, out, NULL);
}

int meta_mknod(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
	       uint64_t parent, struct meta_name name, uint32_t mode, uint64_t rdev,
	       struct meta_inode *out)
{
	uint8_t type;
	switch (mode & S_IFMT) {
	case 0:
	case S_IFREG:
		return meta_create(m, c, rq, parent, name, mode & 07777, META_O_EXCL, out, NULL);
	case S_IFIFO: type = META_T_FIFO; break;
	case S_IFCHR: type = META_T_CHR; break;
	case S_IFBLK: type = META_T_BLK; break;
	case S_IFSOCK: type = META_T_SOCK; break;
	default:
		return -EINVAL;
	}
	if ((type == META_T_CHR || type == META_T_BLK) && c->uid != 0)
		return -EPERM;
	struct new_arg a = { .c = c, .rq = rq, .parent = parent, .name = name,
			     .mode = mode & 07777, .flags = META_O_EXCL, .type = type,
			     .rdev = rdev };
	return run_new(m, &a, out, NULL);
}

/* ---- link ---- */

struct link_arg {
	meta_ctx *m;
	const struct meta_cred *c;
	const struct meta_req *rq;
	uint64_t ino, parent;
	struct meta_name name;
	struct meta_inode in, dir;
};

static int link_body(kv_txn *t, void *arg)
{
	struct link_arg *a = arg;
	struct meta_idem_rec rec;
	struct meta_dentry d;
	int rc = meta_idem_replay(t, a->rq, META_OP_LINK, a->ino, &rec, &a->in);
	if (rc)
		return rc < 0 ? rc : 0;
	if ((rc = meta_get_inode(t, a->ino, 0, &a->in)))
		return rc;
	if (a->in.type == META_T_DIR)
		return -EPERM;
	if (a->in.nlink == 0)
		return -ENOENT;
	if (a->in.nlink >= 65000)
		return -EMLINK;
	rc = meta_parent_dentry(t, a->parent, a->c, 3, a->name, &a->dir, &d);
	if (rc < 0)
		return rc;
	if (rc == 1)
		return -EEXIST;
	a->in.nlink++;
	a->in.ctime = meta_now(a->m);
	if ((rc = meta_put_inode(t, &a->in)))
		return rc;
	if ((rc = meta_put_dentry(t, a->parent, a->name, a->ino, a->in.type)))
		return rc;
	if ((rc = meta_dir_changed(a->m, t, a->parent, a->in.ctime, 0)))
		return rc;
	return meta_idem_put(a->m, t, a->rq, META_OP_LINK, 0, a->ino, 0);
}

int meta_link(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq, uint64_t ino,
	      uint64_t parent, struct meta_name name, struct meta_inode *out)
{
	int rc = meta_check_name(name, META_NAME_NEW);
	if (rc)
		return rc;
	struct link_arg *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	*a = (struct link_arg){ .m = m, .c = c, .rq = rq, .ino = ino, .parent = parent,
				.name = name };
	rc = meta_run_rw(m, rq, link_body, a);
	if (rc == 0 && out)
		*out = a->in;
	free(a);
	return rc;
}

/* ---- unlink, rmdir ---- */

/* 1 or 2 when file IN (its last link going) can go in this txn: inline, no
 * chunk ever written for it (no conversion started) and no write session
 * open (a conflict read: an open racing this aborts one of us). Nothing
 * is left on storage then, so GC has nothing to do: a delete-heavy load
 * of small files costs one txn per unlink instead of three (enqueue,
 * claim, finish) and no GC wake-up. A read-only opener elsewhere (no
 * session) sees ENOENT at its next fetch of the bytes, as it did once GC
 * ran (at once: every unlink woke it). 2: it has an inline-data record to
 * clear; 1: none (a file closed unwritten), which the conflict read proves
 * still holds at commit, so no delete of the absent key is queued. */
static int drop_now(kv_txn *t, const struct meta_inode *in)
{
	struct meta_idata_rec r;
	if (in->type != META_T_FILE || !in->idata)
		return 0;
	int found = meta_idata_get(t, in->ino, 0, &r);
	if (found < 0)
		return found == -CFS_ECORRUPT ? 0 : found;
	if (found == 1 && (r.flags & META_IDATA_F_CHUNK0))
		return 0;
	int rc = meta_has_sessions(t, in->ino, 0);
	return rc < 0 ? rc : rc ? 0 : 1 + found;
}

/* Drops one link of IN (already read with conflict): deletes it outright
 * (directories, symlinks, inline files without sessions: drop_now) or, for
 * another file's last link, queues it for GC. */
static int drop_link(meta_ctx *m, kv_txn *t, struct meta_inode *in, int64_t now)
{
	struct meta_key k, b, e;
	if (in->type == META_T_DIR || in->nlink <= 1) {
		in->nlink = 0;
		int now_ok = drop_now(t, in);
		if (now_ok < 0)
			return now_ok;
		if (in->type != META_T_FILE || now_ok) {
			meta_key_inode(&k, in->ino);
			meta_key_xattr_range(&b, &e, in->ino);
			int rc = kv_clear(t, kv_mem(k.b, k.n));
			if (rc == 0)
				rc = kv_clear_range(t, kv_mem(b.b, b.n), kv_mem(e.b, e.n));
			if (rc == 0 && in->type == META_T_DIR)
				rc = meta_dir_stat_clear(t, in->ino);
			if (rc == 0 && now_ok == 2)
				rc = meta_idata_clear(t, in->ino);
			return rc;
		}
		in->ctime = now;
		int rc = meta_put_inode(t, in);
		if (rc == 0)
			rc = meta_gc_enqueue(m, t, in->ino);
		return rc;
	}
	in->nlink--;
	in->ctime = now;
	return meta_put_inode(t, in);
}

struct remove_arg {
	meta_ctx *m;
	const struct meta_cred *c;
	const struct meta_req *rq;
	uint64_t parent;
	struct meta_name name;
	int dir_op;             /* rmdir */
	int want_dir, dir_ok;   /* as in struct new_arg */
	struct meta_inode dir, in;
};

static int remove_body(kv_txn *t, void *arg)
{
	struct remove_arg *a = arg;
	struct meta_idem_rec rec;
	struct meta_dentry d;
	uint32_t op = a->dir_op ? META_OP_RMDIR : META_OP_UNLINK;
	a->dir_ok = 0;
	int rc = meta_idem_check(t, a->rq, op, &rec);
	if (rc)
		return rc < 0 ? rc : 0;
	rc = meta_parent_dentry(t, a->parent, a->c, 3, a->name, &a->dir, &d);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return -ENOENT;
	rc = meta_get_inode(t, d.ino, 0, &a->in);
	if (rc == -ENOENT) {
		LOG_WARN("meta", "removing dangling dentry: parent=%llu name=%.*s ino=%llu",
			 (unsigned long long)a->parent, (int)a->name.n, a->name.p,
			 (unsigned long long)d.ino);
		if ((rc = meta_del_dentry(t, a->parent, a->name)))
			return rc;
		if ((rc = meta_dir_changed(a->m, t, a->parent, meta_now(a->m), 0)))
			return rc;
		return meta_idem_put(a->m, t, a->rq, op, 0, d.ino, 0);
	}
	if (rc)
		return rc;
	if (a->dir_op && a->in.type != META_T_DIR)
		return -ENOTDIR;
	if (!a->dir_op && a->in.type == META_T_DIR)
		return -EISDIR;
	if ((rc = meta_sticky_ok(&a->dir, &a->in, a->c)))
		return rc;
	if (a->dir_op) {
		rc = meta_dir_nonempty(t, d.ino);
		if (rc)
			return rc < 0 ? rc : -ENOTEMPTY;
	}
	int64_t now = meta_now(a->m);
	if ((rc = meta_del_dentry(t, a->parent, a->name)))
		return rc;
	if ((rc = drop_link(a->m, t, &a->in, now)))
		return rc;
	if ((rc = meta_dir_changed_stat(a->m, t, a->parent, now, a->dir_op ? -1 : 0,
					parent_dir(a->want_dir, &a->dir))))
		return rc;
	if ((rc = meta_idem_put(a->m, t, a->rq, op, 0, d.ino, 0)))
		return rc;
	a->dir_ok = a->want_dir;
	return 0;
}

/* DIR: meta_unlink_dir's, or NULL. */
static int run_remove(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		      uint64_t parent, struct meta_name name, int dir_op, struct meta_inode *dir)
{
	int rc = meta_check_name(name, META_NAME_REMOVE);
	if (rc) {
		if (dir_op && name.n == 2 && name.p[0] == '.' && name.p[1] == '.')
			return -ENOTEMPTY;
		return rc;
	}
	/* On the stack, not zeroed: dir and in (two inodes, 10.5 KiB with
	 * their symlink targets) are filled by their reads before any use.
	 * Zeroing them (twice, calloc then the literal) was 16 % of an
	 * in-process unlink's instructions (bench/history.md "What a
	 * namespace change costs in-process"), and a heap copy of that size
	 * takes glibc's large-request path (malloc and free ~850 instructions
	 * per unlink: bench/history.md, dl27); no thread of ours sets a
	 * stack smaller than the default (megabytes). */
	struct remove_arg arg, *a = &arg;
	a->m = m;
	a->c = c;
	a->rq = rq;
	a->parent = parent;
	a->name = name;
	a->dir_op = dir_op;
	a->want_dir = dir && kv_reports_alone(m->kv);
	int alone = 0;
	rc = meta_run_rw_alone(m, rq, remove_body, a, &alone);
	if (rc == 0 && dir)
		parent_reply(m, parent, a->dir_ok, alone, &a->dir, dir);
	return rc;
}

int meta_unlink(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		uint64_t parent, struct meta_name name)
{
	return run_remove(m, c, rq, parent, name, 0, NULL);
}

int meta_unlink_dir(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		    uint64_t parent, struct meta_name name, struct meta_inode *dir)
{
	return run_remove(m, c, rq, parent, name, 0, dir);
}

int meta_rmdir(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
	       uint64_t parent, struct meta_name name)
{
	return run_remove(m, c, rq, parent, name, 1, NULL);
}

/* ---- rename ---- */

struct rename_arg {
	meta_ctx *m;
	const struct meta_cred *c;
	const struct meta_req *rq;
	uint64_t sparent, dparent;
	struct meta_name sname, dname;
	unsigned flags;
	int walked;             /* ancestor reads so far (both walks share META_MAX_DEPTH) */
	struct meta_inode sp, dp, si, di, walk;
};

/* Refuses (-EINVAL) when VICTIM is START or one of its ancestors. Every
 * ancestor read is a conflict read (see the file comment). */
static int loop_check(struct rename_arg *a, kv_txn *t, uint64_t start, uint64_t victim)
{
	uint64_t cur = start;
	while (cur != META_ROOT_INO) {
		if (cur == victim)
			return -EINVAL;
		if (a->walked++ >= META_MAX_DEPTH)
			return -ELOOP;
		int rc = meta_get_inode(t, cur, 0, &a->walk);
		if (rc)
			return rc == -ENOENT ? -ENOENT : rc;
		cur = a->walk.parent;
	}
	return victim == META_ROOT_INO ? -EINVAL : 0;
}

static int rename_body(kv_txn *t, void *arg)
{
	struct rename_arg *a = arg;
	struct meta_idem_rec rec;
	struct meta_dentry sd, dd;
	int exch = (a->flags & META_RENAME_EXCHANGE) != 0;
	int64_t now = meta_now(a->m);
	a->walked = 0;
	int rc = meta_idem_check(t, a->rq, META_OP_RENAME, &rec);
	if (rc)
		return rc < 0 ? rc : 0;
	if ((rc = meta_get_inode(t, a->sparent, 0, &a->sp)))
		return rc;
	if ((rc = meta_check_parent(&a->sp, a->c, 3)))
		return rc;
	if (a->dparent == a->sparent) {
		a->dp = a->sp;
	} else {
		if ((rc = meta_get_inode(t, a->dparent, 0, &a->dp)))
			return rc;
		if ((rc = meta_check_parent(&a->dp, a->c, 3)))
			return rc;
	}
	rc = meta_get_dentry(t, a->sparent, a->sname, 0, &sd);
	if (rc <= 0)
		return rc < 0 ? rc : -ENOENT;
	int exists = meta_get_dentry(t, a->dparent, a->dname, 0, &dd);
	if (exists < 0)
		return exists;
	/* NOREPLACE first: Linux refuses an existing target name even when
	 * it links the source's inode (do_renameat2 checks before rename's
	 * same-inode shortcut) */
	if ((a->flags & META_RENAME_NOREPLACE) && exists)
		return -EEXIST;
	if (exists && dd.ino == sd.ino)
		return meta_idem_put(a->m, t, a->rq, META_OP_RENAME, 0, sd.ino, 0);
	if (exch && !exists)
		return -ENOENT;
	if ((rc = meta_get_inode(t, sd.ino, 0, &a->si)))
		return rc;
	if ((rc = meta_sticky_ok(&a->sp, &a->si, a->c)))
		return rc;
	int sdir = a->si.type == META_T_DIR, ddir = 0;
	if (exists) {
		if ((rc = meta_get_inode(t, dd.ino, 0, &a->di)))
			return rc;
		if ((rc = meta_sticky_ok(&a->dp, &a->di, a->c)))
			return rc;
		ddir = a->di.type == META_T_DIR;
	}
	int moved = a->sparent != a->dparent;
	/* A directory changing parent gets a new "..": write permission on it. */
	if (sdir && moved && (rc = meta_may(&a->si, a->c, 2)))
		return rc;
	if (exch && ddir && moved && (rc = meta_may(&a->di, a->c, 2)))
		return rc;
	if (exists && !exch) {
		if (sdir && !ddir)
			return -ENOTDIR;
		if (!sdir && ddir)
			return -EISDIR;
		if (ddir) {
			rc = meta_dir_nonempty(t, dd.ino);
			if (rc)
				return rc < 0 ? rc : -ENOTEMPTY;
		}
	}
	if (sdir && moved && (rc = loop_check(a, t, a->dparent, a->si.ino)))
		return rc;
	if (exch && ddir && moved && (rc = loop_check(a, t, a->sparent, a->di.ino)))
		return rc;

	if (exch) {
		if ((rc = meta_put_dentry(t, a->sparent, a->sname, a->di.ino, a->di.type)))
			return rc;
		if ((rc = meta_put_dentry(t, a->dparent, a->dname, a->si.ino, a->si.type)))
			return rc;
		if (ddir)
			a->di.parent = a->sparent;
		a->di.ctime = now;
		if ((rc = meta_put_inode(t, &a->di)))
			return rc;
	} else {
		if ((rc = meta_del_dentry(t, a->sparent, a->sname)))
			return rc;
		if ((rc = meta_put_dentry(t, a->dparent, a->dname, a->si.ino, a->si.type)))
			return rc;
		if (exists && (rc = drop_link(a->m, t, &a->di, now)))
			return rc;
	}
	if (sdir)
		a->si.parent = a->dparent;
	a->si.ctime = now;
	if ((rc = meta_put_inode(t, &a->si)))
		return rc;
	/* Subdirectory counts: a directory leaving sparent for dparent, the
	 * other way for an exchange, and a replaced directory gone. */
	int nsrc = 0, ndst = 0;
	if (exch) {
		if (moved) {
			nsrc = ddir - sdir;
			ndst = sdir - ddir;
		}
	} else {
		if (moved && sdir) {
			nsrc--;
			ndst++;
		}
		if (exists && ddir)
			ndst--;
	}
	if (moved) {
		if ((rc = meta_dir_changed(a->m, t, a->sparent, now, nsrc)) ||
		    (rc = meta_dir_changed(a->m, t, a->dparent, now, ndst)))
			return rc;
	} else if ((rc = meta_dir_changed(a->m, t, a->sparent, now, nsrc + ndst))) {
		return rc;
	}
	return meta_idem_put(a->m, t, a->rq, META_OP_RENAME, 0, sd.ino, 0);
}

int meta_rename(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		uint64_t sparent, struct meta_name sname, uint64_t dparent, struct meta_name dname,
		unsigned flags)
{
	if ((flags & ~(unsigned)(META_RENAME_NOREPLACE | META_RENAME_EXCHANGE)) ||
	    ((flags & META_RENAME_NOREPLACE) && (flags & META_RENAME_EXCHANGE)))
		return -EINVAL;
	int rc = meta_check_name(sname, META_NAME_REMOVE);
	if (rc == 0)
		rc = meta_check_name(dname, META_NAME_REMOVE);
	if (rc)
		return rc;
	struct rename_arg *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	*a = (struct rename_arg){ .m = m, .c = c, .rq = rq, .sparent = sparent,
				  .dparent = dparent, .sname = sname, .dname = dname,
				  .flags = flags };
	rc = meta_run_rw(m, rq, rename_body, a);
	free(a);
	return rc;
}

/* ---- readdir ---- */

struct readdir_arg {
	const struct meta_cred *c;
	uint64_t dir;
	struct meta_name cursor;
	struct meta_dirent *ents;
	int max, n, eof;
	int list;     /* DIRLIST: search permission, and the count in ver */
	uint64_t ver;
	struct meta_inode in;
};

/* Fills DE from one dentry record of a range over DIR's entries (key:
 * the 12-byte dentry prefix, then the name). -CFS_ECORRUPT, logged with
 * WHAT, for a record that does not decode. */
static int dirent_from_kv(const struct kv_pair *kv, uint64_t dir, const char *what,
			  struct meta_dirent *de)
{
	struct meta_dentry d;
	size_t nl = kv->key.n > 12 ? kv->key.n - 12 : 0;
	if (nl == 0 || nl > META_NAME_MAX || meta_dentry_decode(kv->val.p, kv->val.n, &d)) {
		LOG_WARN("meta", "%s: corrupt dentry in dir=%llu", what, (unsigned long long)dir);
		return -CFS_ECORRUPT;
	}
	de->ino = d.ino;
	de->type = d.type;
	de->name_len = (uint8_t)nl;
	memcpy(de->name, (const uint8_t *)kv->key.p + 12, nl);
	de->name[nl] = 0;
	return 0;
}

static int readdir_body(kv_txn *t, void *arg)
{
	struct readdir_arg *a = arg;
	struct meta_key b, e, cur;
	struct kv_range r;
	a->n = 0;
	a->eof = 0;
	int rc = meta_get_inode(t, a->dir, 1, &a->in);
	if (rc)
		return rc;
	if (a->in.type != META_T_DIR)
		return -ENOTDIR;
	if ((rc = meta_may(&a->in, a->c, a->list ? 1 : 4)))
		return rc;
	if (a->list && (rc = meta_dir_version(t, a->dir, &a->ver)))
		return rc;
	meta_key_dir_range(&b, &e, a->dir);
	struct kv_slice begin = kv_mem(b.b, b.n);
	if (a->cursor.n) {
		meta_key_dentry(&cur, a->dir, a->cursor.p, a->cursor.n);
		begin = kv_key_after(t, kv_mem(cur.b, cur.n));
		if (!begin.p)
			return -ENOMEM;
	}
	rc = kv_get_range(t, begin, kv_mem(e.b, e.n), a->max, 1, 0, &r);
	if (rc < 0)
		return rc;
	for (int i = 0; i < r.n; i++) {
		if ((rc = dirent_from_kv(&r.kvs[i], a->dir, "readdir", &a->ents[a->n])))
			return rc;
		a->n++;
	}
	a->eof = !r.has_more;
	return 0;
}

static int readdir_run(meta_ctx *m, const struct meta_cred *c, uint64_t dir,
		       struct meta_name cursor, struct meta_dirent *ents, int max, int *n,
		       int *eof, uint64_t *ver)
{
	if (max <= 0)
		return -EINVAL;
	if (cursor.n > META_NAME_MAX)
		return -ENAMETOOLONG;
	struct readdir_arg *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	*a = (struct readdir_arg){ .c = c, .dir = dir, .cursor = cursor, .ents = ents,
				   .max = max, .list = ver != NULL };
	int rc = meta_run_ro(m, readdir_body, a);
	*n = rc == 0 ? a->n : 0;
	*eof = rc == 0 ? a->eof : 0;
	if (ver)
		*ver = rc == 0 ? a->ver : 0;
	free(a);
	return rc;
}

int meta_readdir(meta_ctx *m, const struct meta_cred *c, uint64_t dir, struct meta_name cursor,
		 struct meta_dirent *ents, int max, int *n, int *eof)
{
	return readdir_run(m, c, dir, cursor, ents, max, n, eof, NULL);
}

int meta_dir_list(meta_ctx *m, const struct meta_cred *c, uint64_t dir, struct meta_name cursor,
		  struct meta_dirent *ents, int max, int *n, int *eof, uint64_t *ver)
{
	return readdir_run(m, c, dir, cursor, ents, max, n, eof, ver);
}

/* ---- lookup-ahead (meta.h meta_lookup_plus) ---- */

struct plus_arg {
	const struct meta_cred *c;
	uint64_t dir;
	struct meta_name start;
	int max, eof;
	meta_plus_fn fn;
	meta_plusd_fn fnd; /* meta_lookup_plus_idata: used instead of fn */
	void *fn_arg;
	struct meta_idata_out d;
	struct meta_inode in;
	struct meta_dirent ents[META_PLUS_MAX];
	/* The entries' inode reads, in one kv_get_multi (plus_body). */
	struct meta_key ikeys[META_PLUS_MAX];
	struct kv_slice ik[META_PLUS_MAX], iv[META_PLUS_MAX];
	int ifound[META_PLUS_MAX];
};

/* The inode of entry I from plus_body's multi-key read, as meta_get_inode
 * would return it (snapshot read): 0, -ENOENT or -CFS_ECORRUPT. */
static int plus_inode(struct plus_arg *a, int i)
{
	uint64_t ino = a->ents[i].ino;
	if (ino == 0 || !a->ifound[i])
		return -ENOENT;
	int rc = meta_inode_decode(a->iv[i].p, a->iv[i].n, &a->in);
	if (rc == 0 && a->in.ino != ino)
		rc = -CFS_ECORRUPT;
	if (rc)
		LOG_WARN("meta", "corrupt inode record: ino=%llu len=%zu",
			 (unsigned long long)ino, a->iv[i].n);
	return rc;
}

/* meta_lookup_plus_idata's step for one entry (A->in read): hands FND
 * the inline bytes when the caller could open the file for reading. */
static int plus_idata(kv_txn *t, struct plus_arg *a, const struct meta_dirent *de)
{
	const struct meta_idata_out *d = NULL;
	struct meta_idata_rec r;
	if (a->in.type == META_T_FILE && a->in.idata && a->in.nlink &&
	    meta_may(&a->in, a->c, 4) == 0) {
		int rc = meta_idata_get(t, a->in.ino, 1, &r);
		if (rc < 0)
			return rc;
		if (rc == 1 && r.len == a->in.size) {
			a->d.buf = (uint8_t *)(uintptr_t)r.data; /* borrowed for the call */
			a->d.len = r.len;
			a->d.ver = r.ver;
			a->d.flags = r.flags;
			d = &a->d;
		}
	}
	return a->fnd(a->fn_arg, de, &a->in, d);
}

static int plus_body(kv_txn *t, void *arg)
{
	struct plus_arg *a = arg;
	struct meta_key b, e, cur;
	struct kv_range r;
	a->eof = 0;
	int rc = a->fnd ? a->fnd(a->fn_arg, NULL, NULL, NULL) : a->fn(a->fn_arg, NULL, NULL);
	if (rc)
		return rc;
	if ((rc = meta_get_inode(t, a->dir, 1, &a->in)))
		return rc;
	if (a->in.type != META_T_DIR)
		return -ENOTDIR;
	if ((rc = meta_may(&a->in, a->c, 1)))
		return rc;
	meta_key_dir_range(&b, &e, a->dir);
	struct kv_slice begin = kv_mem(b.b, b.n);
	if (a->start.n) {
		meta_key_dentry(&cur, a->dir, a->start.p, a->start.n);
		begin = kv_mem(cur.b, cur.n);
	}
	rc = kv_get_range(t, begin, kv_mem(e.b, e.n), a->max, 1, 0, &r);
	if (rc < 0)
		return rc;
	/* Copy the names out before the inode reads reuse the txn. */
	int n = 0;
	for (int i = 0; i < r.n; i++) {
		if ((rc = dirent_from_kv(&r.kvs[i], a->dir, "lookup_plus", &a->ents[n])))
			return rc;
		n++;
	}
	int more = r.has_more;
	/* Every entry's inode in one multi-key read: on etcd one round trip
	 * (per 128 keys) instead of one per entry. */
	for (int i = 0; i < n; i++) {
		meta_key_inode(&a->ikeys[i], a->ents[i].ino);
		a->ik[i] = kv_mem(a->ikeys[i].b, a->ikeys[i].n);
	}
	if ((rc = kv_get_multi(t, n, a->ik, 1, a->iv, a->ifound)))
		return rc;
	for (int i = 0; i < n; i++) {
		rc = plus_inode(a, i);
		if (rc == -ENOENT)
			continue; /* not in this snapshot's namespace after all */
		if (rc || (rc = meta_dir_stat(t, &a->in)))
			return rc;
		if (a->fnd)
			rc = plus_idata(t, a, &a->ents[i]);
		else
			rc = a->fn(a->fn_arg, &a->ents[i], &a->in);
		if (rc < 0)
			return rc;
		if (rc > 0)
			return 0; /* FN has enough: not eof */
	}
	a->eof = !more;
	return 0;
}

/* meta_lookup_plus with FN, or meta_lookup_plus_idata with FND. */
static int plus_run(meta_ctx *m, const struct meta_cred *c, uint64_t dir, struct meta_name start,
		    int max, meta_plus_fn fn, meta_plusd_fn fnd, void *arg, int *eof)
{
	*eof = 0;
	if (max <= 0 || max > META_PLUS_MAX)
		return -EINVAL;
	if (start.n > META_NAME_MAX)
		return -ENAMETOOLONG;
	struct plus_arg *a = malloc(sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->c = c;
	a->dir = dir;
	a->start = start;
	a->max = max;
	a->fn = fn;
	a->fnd = fnd;
	a->fn_arg = arg;
	a->eof = 0;
	int rc = meta_run_ro(m, plus_body, a);
	if (rc == 0)
		*eof = a->eof;
	free(a);
	return rc;
}

int meta_lookup_plus(meta_ctx *m, const struct meta_cred *c, uint64_t dir, struct meta_name start,
		     int max, meta_plus_fn fn, void *arg, int *eof)
{
	return plus_run(m, c, dir, start, max, fn, NULL, arg, eof);
}

int meta_lookup_plus_idata(meta_ctx *m, const struct meta_cred *c, uint64_t dir,
			   struct meta_name start, int max, meta_plusd_fn fn, void *arg, int *eof)
{
	return plus_run(m, c, dir, start, max, NULL, fn, arg, eof);
}
