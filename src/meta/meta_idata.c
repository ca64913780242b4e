/* meta_idata.c - inline data: small files whose bytes live in meta.
 *
 * HOW IT WORKS. A regular file created with META_O_IDATA while
 * opts.idata_max > 0 carries the inode flag "inline data" (schema.h): its
 * bytes are the IDAT record next to the inode, written in the same txn as
 * the size and times, so a small file costs one durable step per write
 * instead of a chunk write on every replica plus a length report. getattr
 * and lookup never read the record (it has its own key).
 *
 *   inline --write/truncate with end <= idata_max--> inline
 *   inline --convert_begin (claim, lease)--> inline+claimed
 *          --client writes bytes to chunks, convert_commit(ver)--> chunked
 *   inline --convert_commit(EMPTY), data empty, never ATTEMPTED--> chunked
 *   chunked: never inline again (a truncate below the threshold keeps the
 *            chunks: simpler, and the file was large once).
 *
 * INVARIANTS. An inline inode's size equals its IDAT length (absent
 * record: 0). A chunked inode has no IDAT record. The flip is one txn that
 * checks the record's version (bumped by every change of the bytes) and
 * the claim, so the chunks it exposes hold exactly the bytes readers saw
 * inline. The claim (conv_owner, conv_until) keeps a second converter from
 * copying old bytes over chunk writes made after a first one's flip; a
 * converter that dies loses it after META_IDATA_LEASE_NS. flags bit
 * ATTEMPTED records that chunk 0 may hold bytes of an unfinished
 * conversion: the next converter replaces that chunk whole (a client
 * without the conditional write removes it first; file_io_idata.c), an
 * EMPTY commit is refused, and GC removes chunks only for such files (an
 * inline file that never began converting has none). Bit PLACED (set by
 * a MARK commit, which a converter sends before it writes chunk 0's
 * placeholder, i.e. before its begin) does the same for GC and EMPTY: a
 * converter that dies between the placeholder and the begin leaves a
 * chunk 0 that GC removes with the file. A converter's late
 * chunk-0 write after another's commit is fenced at storage, not here
 * (docs/inline-data.md "The fence").
 *
 * Inline writes are not permission-checked here, like chunk writes on
 * storage: the client checked at open. Thread-safe; every call blocks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/status.h"
#include "meta/meta_int.h"

int meta_idata_get(kv_txn *t, uint64_t ino, int snapshot, struct meta_idata_rec *r)
{
	struct meta_key k;
	struct kv_slice v;
	meta_key_idata(&k, ino);
	memset(r, 0, sizeof(*r));
	int rc = kv_get(t, kv_mem(k.b, k.n), snapshot, &v);
	if (rc <= 0)
		return rc;
	rc = meta_idata_decode(v.p, v.n, r);
	if (rc) {
		LOG_WARN("meta", "corrupt inline data record: ino=%llu len=%zu",
			 (unsigned long long)ino, v.n);
		return rc;
	}
	return 1;
}

int meta_idata_put(kv_txn *t, uint64_t ino, const struct meta_idata_rec *r)
{
	struct meta_key k;
	struct buf b = BUF_INIT;
	meta_key_idata(&k, ino);
	int rc = meta_idata_encode(r, &b);
	if (rc == 0)
		rc = kv_set(t, kv_mem(k.b, k.n), kv_mem(b.data, b.len));
	buf_fini(&b);
	return rc;
}

int meta_idata_clear(kv_txn *t, uint64_t ino)
{
	struct meta_key k;
	meta_key_idata(&k, ino);
	return kv_clear(t, kv_mem(k.b, k.n));
}

/* Sets the inline bytes of inode IN (inline) to LEN: cut, or zero-filled
 * past the old end; bumps the version. SCRATCH: META_IDATA_MAX bytes. */
int meta_idata_resize(kv_txn *t, uint64_t ino, uint64_t len, uint8_t *scratch)
{
	struct meta_idata_rec r;
	if (len > META_IDATA_MAX)
		return -CFS_ENOTINLINE;
	int rc = meta_idata_get(t, ino, 0, &r);
	if (rc < 0)
		return rc;
	uint32_t keep = r.len < len ? r.len : (uint32_t)len;
	if (keep)
		memcpy(scratch, r.data, keep);
	memset(scratch + keep, 0, (size_t)(len - keep));
	r.data = scratch;
	r.len = (uint32_t)len;
	r.ver++;
	return meta_idata_put(t, ino, &r);
}

struct idata_arg {
	meta_ctx *m;
	const struct meta_req *rq;
	uint64_t ino, off, ver;
	const uint8_t *data;
	size_t len;
	unsigned flags;
	struct meta_inode in;
	struct meta_idata_out *d;
	uint8_t *scratch;          /* META_IDATA_MAX bytes */
};

static void copy_out(struct meta_idata_out *d, const struct meta_idata_rec *r)
{
	if (!d)
		return;
	if (r->len)
		memcpy(d->buf, r->data, r->len);
	d->len = r->len;
	d->ver = r->ver;
	d->flags = r->flags;
}

static int write_body(kv_txn *t, void *arg)
{
	struct idata_arg *a = arg;
	struct meta_idem_rec rec;
	struct meta_idata_rec r;
	int rc = meta_idem_check(t, a->rq, META_OP_IDATA_WRITE, &rec);
	if (rc < 0)
		return rc;
	if (rc == 1)
		return meta_get_inode(t, a->ino, 1, &a->in);
	if ((rc = meta_get_inode(t, a->ino, 0, &a->in)))
		return rc;
	if (a->in.type != META_T_FILE)
		return a->in.type == META_T_DIR ? -EISDIR : -EINVAL;
	uint64_t end = a->off + a->len;
	if (!a->in.idata || end > a->m->o.idata_max || end > META_IDATA_MAX)
		return -CFS_ENOTINLINE;
	if (a->len == 0)
		return 0;
	if ((rc = meta_idata_get(t, a->ino, 0, &r)) < 0)
		return rc;
	uint32_t nl = r.len > end ? r.len : (uint32_t)end;
	if (r.len)
		memcpy(a->scratch, r.data, r.len);
	if (a->off > r.len)
		memset(a->scratch + r.len, 0, (size_t)(a->off - r.len));
	memcpy(a->scratch + a->off, a->data, a->len);
	r.data = a->scratch;
	r.len = nl;
	r.ver++;
	if ((rc = meta_idata_put(t, a->ino, &r)))
		return rc;
	a->in.size = nl;
	a->in.mtime = a->in.ctime = meta_now(a->m);
	if ((rc = meta_put_inode(t, &a->in)))
		return rc;
	return meta_idem_put(a->m, t, a->rq, META_OP_IDATA_WRITE, 0, a->ino, 0);
}

static struct idata_arg *arg_new(meta_ctx *m, const struct meta_req *rq, uint64_t ino,
				 int scratch)
{
	struct idata_arg *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	if (scratch && !(a->scratch = malloc(META_IDATA_MAX))) {
		free(a);
		return NULL;
	}
	a->m = m;
	a->rq = rq;
	a->ino = ino;
	return a;
}

static void arg_free(struct idata_arg *a)
{
	if (a)
		free(a->scratch);
	free(a);
}

/* The end of a call through A that ran to RC: the inode it read into
 * *OUT (when OUT) if it succeeded, A freed; returns RC. */
static int arg_end(struct idata_arg *a, int rc, struct meta_inode *out)
{
	if (rc == 0 && out)
		*out = a->in;
	arg_free(a);
	return rc;
}

int meta_idata_write(meta_ctx *m, const struct meta_req *rq, uint64_t ino, uint64_t off,
		     const void *data, size_t len, struct meta_inode *out)
{
	if (len > META_IDATA_MAX || off > META_IDATA_MAX)
		return -CFS_ENOTINLINE;
	struct idata_arg *a = arg_new(m, rq, ino, 1);
	if (!a)
		return -ENOMEM;
	a->off = off;
	a->data = data;
	a->len = len;
	return arg_end(a, meta_run_rw(m, rq, write_body, a), out);
}

static int read_body(kv_txn *t, void *arg)
{
	struct idata_arg *a = arg;
	struct meta_idata_rec r;
	int rc = meta_get_inode(t, a->ino, 1, &a->in);
	if (rc || !a->in.idata)
		return rc;
	if ((rc = meta_idata_get(t, a->ino, 1, &r)) < 0)
		return rc;
	copy_out(a->d, &r);
	return 0;
}

int meta_idata_read(meta_ctx *m, uint64_t ino, struct meta_inode *out, struct meta_idata_out *d)
{
	struct idata_arg *a = arg_new(m, NULL, ino, 0);
	if (!a)
		return -ENOMEM;
	a->d = d;
	return arg_end(a, meta_run_ro(m, read_body, a), out);
}

static uint64_t client_of(const struct meta_req *rq)
{
	return rq ? rq->client : 0;
}

static int begin_body(kv_txn *t, void *arg)
{
	struct idata_arg *a = arg;
	struct meta_idata_rec r;
	int rc = meta_get_inode(t, a->ino, 0, &a->in);
	if (rc)
		return rc;
	if (!a->in.idata)
		return -CFS_ENOTINLINE;
	if ((rc = meta_idata_get(t, a->ino, 0, &r)) < 0)
		return rc;
	int64_t now = meta_now(a->m);
	if (r.conv_owner && r.conv_owner != client_of(a->rq) && r.conv_until > now)
		return -EBUSY;
	copy_out(a->d, &r); /* flags as before this claim: ATTEMPTED by others */
	r.conv_owner = client_of(a->rq);
	r.conv_until = now + a->m->o.idata_lease_ns;
	r.flags |= META_IDATA_F_ATTEMPTED;
	return meta_idata_put(t, a->ino, &r);
}

int meta_idata_convert_begin(meta_ctx *m, const struct meta_req *rq, uint64_t ino,
			     struct meta_inode *out, struct meta_idata_out *d)
{
	struct idata_arg *a = arg_new(m, rq, ino, 0);
	if (!a)
		return -ENOMEM;
	a->d = d;
	/* Re-claiming is harmless: safe to retry after a maybe-commit. */
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 40 };
	return arg_end(a, meta_run(m, &o, begin_body, a), out);
}

static int commit_body(kv_txn *t, void *arg)
{
	struct idata_arg *a = arg;
	struct meta_idata_rec r;
	int rc = meta_get_inode(t, a->ino, 0, &a->in);
	if (rc)
		return rc;
	if (!a->in.idata)
		return -CFS_ENOTINLINE;
	if ((rc = meta_idata_get(t, a->ino, 0, &r)) < 0)
		return rc;
	if (a->flags & META_IDATA_COMMIT_MARK) {
		if (r.flags & META_IDATA_F_PLACED)
			return 0;
		r.flags |= META_IDATA_F_PLACED;
		return meta_idata_put(t, a->ino, &r);
	}
	if (a->flags & META_IDATA_COMMIT_EMPTY) {
		/* After an attempt chunk 0 may hold its bytes (even when the
		 * data was cut to nothing since): flipping without removing
		 * them would expose them under the next write or extension.
		 * -EAGAIN sends the client the long way (begin, which says
		 * ATTEMPTED and waits out a live claim, then the removal). */
		if (r.len || (r.flags & META_IDATA_F_CHUNK0))
			return -EAGAIN;
	} else if (r.conv_owner != client_of(a->rq) || r.ver != a->ver) {
		return -EAGAIN;
	}
	a->in.idata = 0;
	a->in.size = r.len;
	a->in.chains_used = meta_chains_hint(&a->in, r.len);
	if ((rc = meta_idata_clear(t, a->ino)))
		return rc;
	return meta_put_inode(t, &a->in);
}

int meta_idata_convert_commit(meta_ctx *m, const struct meta_req *rq, uint64_t ino, uint64_t ver,
			      unsigned flags, struct meta_inode *out)
{
	struct idata_arg *a = arg_new(m, rq, ino, 0);
	if (!a)
		return -ENOMEM;
	a->ver = ver;
	a->flags = flags;
	/* A replay after a maybe-commit that did flip answers ENOTINLINE,
	 * which callers take as "chunked": the outcome they wanted. */
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 40 };
	int rc = arg_end(a, meta_run(m, &o, commit_body, a), out);
	/* To a MARK, -EAGAIN is what a meta from before the flag answers
	 * (a commit whose version never matches): the client then goes on
	 * unmarked. Whatever failed here is not that (commit_body's MARK
	 * never says it): an answer to retry. */
	if (rc == -EAGAIN && (flags & META_IDATA_COMMIT_MARK))
		rc = -CFS_EUNAVAIL;
	return rc;
}

int meta_open_idata(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		    uint64_t ino, unsigned flags, struct meta_inode *out, uint64_t *session,
		    struct meta_idata_out *d, int *has)
{
	*has = 0;
	int rc = meta_open(m, c, rq, ino, flags, out, session);
	if (rc || !out->idata || !(flags & META_O_IDATA) || !d)
		return rc;
	/* A second read-only txn (cheap: no commit): the bytes may be a
	 * little newer than the attributes, never older. */
	struct idata_arg *a = arg_new(m, NULL, ino, 0);
	if (!a)
		return 0;
	a->d = d;
	if (meta_run_ro(m, read_body, a) == 0 && a->in.idata) {
		*out = a->in;
		*has = 1;
	}
	arg_free(a);
	return 0;
}
