/* meta_dispatch.c - decode, run, encode one meta request (meta_dispatch.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "common/wire.h"
#include "meta/meta_dispatch.h"
#include "meta/meta_int.h"
#include "meta/meta_lock.h"

/* Points R's inline-data fields at D when R->has_idata. */
static void idata_out(struct meta_rpc_resp *r, const struct meta_idata_out *d)
{
	if (!r->has_idata)
		return;
	r->idata = d->buf;
	r->idata_len = d->len;
	r->idata_ver = d->ver;
	r->idata_flags = d->flags;
}

/* LOOKUP_PLUS reply entries, encoded as meta_lookup_plus hands them over. */
struct plus_out {
	struct buf b;
	int n;
};

static int plus_add(void *arg, const struct meta_dirent *de, const struct meta_inode *in)
{
	struct plus_out *po = arg;
	if (!de) { /* the txn body (re)starts */
		buf_reset(&po->b);
		po->n = 0;
		return 0;
	}
	if (po->b.len >= META_PLUS_REPLY_MAX)
		return 1; /* enough for one reply: the rest is "not eof" */
	int rc = meta_rpc_plus_put(&po->b, de, in);
	if (rc == 0)
		po->n++;
	return rc;
}

/* LOOKUP_PLUSD entries, likewise, with the inline bytes. */
static int plusd_add(void *arg, const struct meta_dirent *de, const struct meta_inode *in,
		     const struct meta_idata_out *d)
{
	struct plus_out *po = arg;
	if (!de)
		return plus_add(arg, NULL, NULL);
	if (po->b.len >= META_PLUS_REPLY_MAX)
		return 1;
	int rc = meta_rpc_plusd_put(&po->b, de, in, d ? d->buf : NULL, d ? d->len : 0);
	if (rc == 0)
		po->n++;
	return rc;
}

/* Runs M on W's scratch; fills R. Returns 0 or the operation's error; a
 * layout refusal leaves its reason in err. */
static int run_op(meta_ctx *mc, struct meta_scratch *w, const struct meta_rpc_req *m,
		  struct meta_rpc_resp *r, char *err, size_t errlen)
{
	struct meta_cred c = { m->uid, m->gid, m->ngroups, m->groups };
	struct meta_req rq = { m->client, m->seq, m->idem_low };
	const struct meta_length *len = m->has_len ? &m->len : NULL;
	int rc;

	r->inode = &w->inode;
	switch (m->type) {
	case META_RPC_LOOKUP:
		return meta_lookup(mc, &c, m->ino, m->name, &w->inode);
	case META_RPC_GETATTR:
		return meta_getattr(mc, m->ino, &w->inode);
	case META_RPC_SETATTR:
		return meta_setattr(mc, &c, &rq, m->ino, &m->sa, &w->inode);
	case META_RPC_CREATE:
		return meta_create(mc, &c, &rq, m->ino, m->name, m->mode, m->flags, &w->inode,
				   &r->session);
	case META_RPC_OPEN:
		if (m->flags & META_O_IDATA) {
			struct meta_idata_out d = { .buf = w->xval };
			rc = meta_open_idata(mc, &c, &rq, m->ino, m->flags, &w->inode, &r->session,
					     &d, &r->has_idata);
			idata_out(r, &d);
			return rc;
		}
		/* A client that does not ask for inline bytes (one older than
		 * inline data) would read an inline file's absent chunks as
		 * zeros: refuse it with a reason instead. */
		if (meta_getattr(mc, m->ino, &w->inode) == 0 && w->inode.idata) {
			snprintf(err, errlen, "the file keeps its bytes in meta (inline data) and "
			                      "this client does not read them: upgrade it");
			return -EOPNOTSUPP;
		}
		return meta_open(mc, &c, &rq, m->ino, m->flags, &w->inode, &r->session);
	case META_RPC_IDATA_WRITE:
		return meta_idata_write(mc, &rq, m->ino, m->off, m->data, m->data_len, &w->inode);
	case META_RPC_IDATA_READ: {
		struct meta_idata_out d = { .buf = w->xval };
		rc = meta_idata_read(mc, m->ino, &w->inode, &d);
		r->has_idata = rc == 0 && w->inode.idata;
		idata_out(r, &d);
		return rc;
	}
	case META_RPC_IDATA_CONVERT: {
		if (m->count == META_RPC_IDATA_COMMIT)
			return meta_idata_convert_commit(mc, &rq, m->ino, m->ver, m->flags, &w->inode);
		struct meta_idata_out d = { .buf = w->xval };
		rc = meta_idata_convert_begin(mc, &rq, m->ino, &w->inode, &d);
		r->has_idata = rc == 0;
		idata_out(r, &d);
		return rc;
	}
	case META_RPC_CLOSE:
		if (m->flags & META_CLOSE_LEN_KNOWN)
			return meta_close_known(mc, &rq, m->ino, m->ino2, len);
		return meta_close(mc, &rq, m->ino, m->ino2, len);
	case META_RPC_CLOSE_MANY: {
		uint64_t pairs[2 * META_CLOSE_MANY_MAX];
		int n = (int)(m->data_len / 16);
		for (int i = 0; i < 2 * n; i++)
			pairs[i] = wire_load_u64(m->data + 8 * i);
		return meta_close_many(mc, &rq, pairs, n);
	}
	case META_RPC_MKDIR:
		return meta_mkdir(mc, &c, &rq, m->ino, m->name, m->mode, &w->inode);
	case META_RPC_MKNOD:
		return meta_mknod(mc, &c, &rq, m->ino, m->name, m->mode, m->rdev, &w->inode);
	case META_RPC_RMDIR:
		return meta_rmdir(mc, &c, &rq, m->ino, m->name);
	case META_RPC_UNLINK:
		return meta_unlink(mc, &c, &rq, m->ino, m->name);
	case META_RPC_CREATE_DIR:
		rc = meta_create_dir(mc, &c, &rq, m->ino, m->name, m->mode, m->flags, &w->inode,
				     &r->session, &w->dir);
		if (rc == 0)
			r->dir = &w->dir;
		return rc;
	case META_RPC_UNLINK_DIR:
		rc = meta_unlink_dir(mc, &c, &rq, m->ino, m->name, &w->dir);
		if (rc == 0)
			r->dir = &w->dir;
		return rc;
	case META_RPC_RENAME:
		return meta_rename(mc, &c, &rq, m->ino, m->name, m->ino2, m->name2, m->flags);
	case META_RPC_LINK:
		return meta_link(mc, &c, &rq, m->ino, m->ino2, m->name, &w->inode);
	case META_RPC_SYMLINK:
		return meta_symlink(mc, &c, &rq, m->ino, m->name,
				    (struct meta_name){ (const char *)m->data, m->data_len },
				    &w->inode);
	case META_RPC_READLINK:
		rc = meta_readlink(mc, m->ino, w->link, sizeof(w->link));
		if (rc < 0)
			return rc;
		r->data = (const uint8_t *)w->link;
		r->data_len = (uint32_t)rc;
		return 0;
	case META_RPC_READDIR:
		r->ents = w->ents;
		return meta_readdir(mc, &c, m->ino, m->name, w->ents, (int)m->count, &r->n, &r->eof);
	case META_RPC_DIRLIST:
		r->ents = w->ents;
		return meta_dir_list(mc, &c, m->ino, m->name, w->ents, (int)m->count, &r->n, &r->eof,
				     &r->dir_ver);
	case META_RPC_GETXATTR: {
		size_t cap = m->count < sizeof(w->xval) ? m->count : sizeof(w->xval);
		rc = meta_getxattr(mc, &c, m->ino, m->name, w->xval, cap);
		if (rc < 0)
			return rc;
		r->size = (uint64_t)rc;
		r->data = w->xval;
		r->data_len = cap ? (uint32_t)rc : 0;
		return 0;
	}
	case META_RPC_SETXATTR:
		return meta_setxattr(mc, &c, &rq, m->ino, m->name, m->data, m->data_len, m->flags);
	case META_RPC_LISTXATTR: {
		size_t cap = m->count < META_RPC_LIST_MAX ? m->count : META_RPC_LIST_MAX;
		if (cap && !(w->list = malloc(cap)))
			return -ENOMEM;
		rc = meta_listxattr(mc, &c, m->ino, w->list, cap);
		if (rc < 0)
			return rc;
		r->size = (uint64_t)rc;
		r->data = (const uint8_t *)w->list;
		r->data_len = cap ? (uint32_t)rc : 0;
		return 0;
	}
	case META_RPC_REMOVEXATTR:
		return meta_removexattr(mc, &c, &rq, m->ino, m->name);
	case META_RPC_STATFS:
		return meta_statfs(mc, &r->statfs);
	case META_RPC_SYNC:
		return meta_sync(mc, m->ino, len, m->query, &r->size);
	case META_RPC_FSYNC:
		return meta_fsync(mc, m->ino, len, m->query, &r->size);
	case META_RPC_DIRVER: {
		size_t n = m->data_len / 8;
		uint64_t *dirs = malloc((n ? n : 1) * sizeof(*dirs));
		uint8_t *out = malloc((n ? n : 1) * 8);
		if (!dirs || !out) {
			free(dirs);
			free(out);
			return -ENOMEM;
		}
		for (size_t i = 0; i < n; i++)
			dirs[i] = wire_load_u64(m->data + 8 * i);
		rc = meta_dir_versions(mc, dirs, n, dirs);
		for (size_t i = 0; rc == 0 && i < n; i++)
			wire_store_u64(out + 8 * i, dirs[i]);
		free(dirs);
		if (rc < 0) {
			free(out);
			return rc;
		}
		w->list = (char *)out; /* freed with the worker's reply, as listxattr's */
		r->data = out;
		r->data_len = (uint32_t)(8 * n);
		return 0;
	}
	case META_RPC_LOOKUP_PLUS:
	case META_RPC_LOOKUP_PLUSD: {
		struct plus_out po = { BUF_INIT, 0 };
		int eof = 0;
		rc = m->type == META_RPC_LOOKUP_PLUSD
			     ? meta_lookup_plus_idata(mc, &c, m->ino, m->name, (int)m->count,
						      plusd_add, &po, &eof)
			     : meta_lookup_plus(mc, &c, m->ino, m->name, (int)m->count, plus_add,
						&po, &eof);
		w->list = (char *)po.b.data; /* freed with the worker's reply, as listxattr's */
		if (rc < 0)
			return rc;
		r->n = po.n;
		r->eof = eof;
		r->data = po.b.data;
		r->data_len = (uint32_t)po.b.len;
		return 0;
	}
	case META_RPC_LAYOUT_GET:
		rc = meta_getattr(mc, m->ino, &w->inode);
		if (rc < 0)
			return rc;
		r->has_layout = w->inode.has_layout;
		r->layout = &w->inode.layout;
		return 0;
	case META_RPC_LAYOUT_SET:
		return meta_set_dir_layout(mc, &c, &rq, m->ino, m->chunk_size, m->stripe,
					   m->table_id, err, errlen);
	case META_RPC_ACCESS:
		return meta_access(mc, &c, m->ino, (int)m->flags);
	case META_RPC_LOCK_SET:
		return meta_lock_set(mc, m->ino, &m->lock, NULL);
	case META_RPC_LOCK_GET:
		rc = meta_lock_get(mc, m->ino, &m->lock, &r->lock);
		r->has_lock = rc == 1;
		return rc < 0 ? rc : 0;
	case META_RPC_LOCK_RELEASE:
		rc = meta_lock_release(mc, m->ino, m->client, m->lock.owner,
				       (m->flags & META_RPC_LOCK_ANY_OWNER) != 0, m->flags);
		return rc < 0 ? rc : 0;
	}
	return -CFS_EBADMSG_TYPE;
}

static int reply_text(char *err, size_t errlen, const char *op, int rc, const char *detail)
{
	snprintf(err, errlen, "%s: %s%s%s", op, cfs_strerror(rc), detail ? ": " : "",
		 detail ? detail : "");
	return rc;
}

int meta_request_kv_only(const struct meta_rpc_req *m)
{
	switch (m->type) {
	case META_RPC_OPEN:
		/* meta_open's truncate of a chunked file cuts chunks on storage */
		return !(m->flags & META_O_TRUNC);
	case META_RPC_CLOSE:
		/* without the length, meta_close asks storage (meta_sync query) */
		return (m->flags & META_CLOSE_LEN_KNOWN) != 0;
	case META_RPC_SETATTR:
		/* a size change of a chunked file cuts chunks (truncate_storage) */
		return !(m->sa.valid & META_SET_SIZE);
	case META_RPC_SYNC:
		/* a length the client reports, no storage query (meta_sync) */
		return !m->query;
	case META_RPC_CREATE:
	case META_RPC_CREATE_DIR:
		/* opening an existing file with O_TRUNC truncates it (meta_create);
		 * an exclusive create (the mount's first try) never opens one */
		return !(m->flags & META_O_TRUNC) || (m->flags & META_O_EXCL);
	}
	return 1;
}

/* dispatch's MODE bits. */
#define D_KV_ONLY 1   /* meta_dispatch_kv_only: leave what needs more than the KV */
#define D_NO_IDEM 2   /* meta_dispatch_in_process: no idempotency record */

/* Runs the request decoded into S->req (operation name OP) in MODE; the
 * reply goes to S->out encoded, or with DIRECT to *DIRECT as decoding
 * that encoding would give (meta_rpc_resp_copy). */
static int run_decoded(meta_ctx *mc, struct meta_scratch *s, const char *op, int mode,
		       struct meta_rpc_resp *direct, char *err, size_t errlen)
{
	struct meta_rpc_req *m = &s->req;
	struct meta_rpc_resp r;
	char detail[256] = "";
	int rc;

	if ((mode & D_KV_ONLY) && !meta_request_kv_only(m))
		return META_DISPATCH_PASS;
	if (mode & D_NO_IDEM)
		m->seq = m->idem_low = 0; /* meta_idem_check / _put: no record */
	memset(&r, 0, sizeof(r));
	r.type = m->type;
	buf_reset(&s->out);
	s->list = NULL;
	/* A KV-only form that finds it needs storage after all (a length
	 * report under an older truncate_ver, meta_file.c "Length") goes
	 * where storage may be asked: the service's workers. */
	if (mode & D_KV_ONLY)
		meta_storage_bar(1);
	rc = run_op(mc, s, m, &r, detail, sizeof(detail));
	if ((mode & D_KV_ONLY) && meta_storage_bar(0)) {
		free(s->list);
		s->list = NULL;
		return META_DISPATCH_PASS;
	}
	if (rc < 0) {
		reply_text(err, errlen, op, rc, *detail ? detail : NULL);
	} else if (direct) {
		rc = meta_rpc_resp_copy(direct, &r);
		if (rc)
			reply_text(err, errlen, op, rc, rc == -CFS_EPROTO ? "a reply inode of no known type"
									 : "encoding the reply");
	} else {
		rc = meta_rpc_resp_encode(&s->out, &r);
		if (rc)
			reply_text(err, errlen, op, rc, "encoding the reply");
	}
	free(s->list);
	s->list = NULL;
	return rc;
}

/* The request's own code: -CFS_EPROTO malformed, another over a limit. */
static int bad_request(char *err, size_t errlen, const char *op, int rc)
{
	return reply_text(err, errlen, op, rc,
			  rc == -CFS_EPROTO ? "malformed payload" : "field over its limit");
}

static int dispatch(meta_ctx *mc, struct meta_scratch *s, uint16_t type, const uint8_t *p,
		    uint32_t plen, char *err, size_t errlen, int *malformed, int mode)
{
	const char *op = meta_rpc_name(type);
	int rc;

	*malformed = 0;
	if (!op)
		return reply_text(err, errlen, "meta", -CFS_EBADMSG_TYPE, NULL);
	rc = meta_rpc_req_decode(type, p, plen, &s->req);
	if (rc) {
		*malformed = rc == -CFS_EPROTO;
		return bad_request(err, errlen, op, rc);
	}
	return run_decoded(mc, s, op, mode, NULL, err, errlen);
}

int meta_dispatch(meta_ctx *mc, struct meta_scratch *s, uint16_t type, const uint8_t *p,
		  uint32_t plen, char *err, size_t errlen, int *malformed)
{
	return dispatch(mc, s, type, p, plen, err, errlen, malformed, 0);
}

int meta_dispatch_kv_only(meta_ctx *mc, struct meta_scratch *s, uint16_t type,
			  const uint8_t *p, uint32_t plen, char *err, size_t errlen, int *malformed)
{
	return dispatch(mc, s, type, p, plen, err, errlen, malformed, D_KV_ONLY);
}

int meta_dispatch_in_process(meta_ctx *mc, struct meta_scratch *s, uint16_t type,
			     const uint8_t *p, uint32_t plen, char *err, size_t errlen,
			     int *malformed)
{
	return dispatch(mc, s, type, p, plen, err, errlen, malformed, D_KV_ONLY | D_NO_IDEM);
}

int meta_dispatch_in_process_req(meta_ctx *mc, struct meta_scratch *s,
				 const struct meta_rpc_req *m, struct meta_rpc_resp *out, char *err,
				 size_t errlen)
{
	const char *op = meta_rpc_name(m->type);
	int rc;

	if (!op)
		return reply_text(err, errlen, "meta", -CFS_EBADMSG_TYPE, NULL);
	if (!meta_rpc_resp_copyable(m->type) || out->type != m->type)
		return reply_text(err, errlen, op, -EINVAL, "no direct call of this type");
	rc = meta_rpc_req_copy(&s->req, m);
	if (rc)
		return bad_request(err, errlen, op, rc);
	return run_decoded(mc, s, op, D_KV_ONLY | D_NO_IDEM, out, err, errlen);
}

int meta_type_read_only(uint16_t t)
{
	switch (t) {
	case META_RPC_LOOKUP: case META_RPC_GETATTR: case META_RPC_ACCESS:
	case META_RPC_READLINK: case META_RPC_READDIR: case META_RPC_GETXATTR:
	case META_RPC_LISTXATTR: case META_RPC_LAYOUT_GET:
		return 1;
	}
	return 0;
}

int meta_type_kv_only_mutation(uint16_t t)
{
	switch (t) {
	case META_RPC_CREATE: case META_RPC_MKDIR: case META_RPC_MKNOD: case META_RPC_UNLINK:
	case META_RPC_RMDIR: case META_RPC_RENAME: case META_RPC_LINK: case META_RPC_SYMLINK:
	case META_RPC_CREATE_DIR: case META_RPC_UNLINK_DIR:
		return 1;
	}
	return 0;
}
