/* meta_proto.c - codecs of the metadata-service messages (meta_proto.h;
 * layouts in the catalog in net/rpc_proto.h).
 *
 * One encoder and one decoder per direction, switching on the type, so each
 * field kind (name, inode, layout, length report) has exactly one reader and
 * one writer. Decoders read through a wire_reader and check once at the end
 * (the reader latches the first error). Counts are checked against their
 * limit and against the bytes present before any loop uses them, so a
 * hostile count can neither overrun a caller array nor spin. An over-limit
 * field in an otherwise sound payload latches the POSIX code the operation
 * would return (the reader keeps the first error, so a later truncation
 * does not mask it and vice versa).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "common/wire.h"
#include "meta/meta_proto.h"

static const char *const names[] = {
	"INFO", "LOOKUP", "GETATTR", "SETATTR", "CREATE", "OPEN", "CLOSE", "MKDIR",
	"RMDIR", "UNLINK", "RENAME", "LINK", "SYMLINK", "READLINK", "READDIR", "GETXATTR",
	"SETXATTR", "LISTXATTR", "REMOVEXATTR", "STATFS", "SYNC", "LAYOUT_GET", "LAYOUT_SET",
	"ACCESS", "MKNOD",
};

/* Types of the 240..249 block (metadata speed), from META_RPC_FSYNC. */
static const char *const names_240[] = { "FSYNC" };
static const char *const lock_names[] = { "LOCK_SET", "LOCK_GET", "LOCK_RELEASE" };
static const char *const idata_names[] = { "IDATA_WRITE", "IDATA_READ", "IDATA_CONVERT" };
static const char *const names_265[] = { "CREATE_DIR", "UNLINK_DIR" };
static const char *const names_267[] = { "LOOKUP_PLUS" };

const char *meta_rpc_name(uint16_t type)
{
	if (type >= META_RPC_FSYNC && type <= META_RPC_LAST_240)
		return names_240[type - META_RPC_FSYNC];
	if (type >= META_RPC_LOCK_FIRST && type <= META_RPC_LOCK_LAST)
		return lock_names[type - META_RPC_LOCK_FIRST];
	if (type == META_RPC_DIRVER)
		return "DIRVER";
	if (type >= META_RPC_IDATA_FIRST && type <= META_RPC_IDATA_LAST)
		return idata_names[type - META_RPC_IDATA_FIRST];
	if (type >= META_RPC_FIRST_265 && type <= META_RPC_LAST_265)
		return names_265[type - META_RPC_FIRST_265];
	if (type >= META_RPC_FIRST_267 && type <= META_RPC_LAST_267)
		return names_267[type - META_RPC_FIRST_267];
	if (type < META_RPC_FIRST || type > META_RPC_LAST)
		return NULL;
	return names[type - META_RPC_FIRST];
}

int meta_rpc_is_mutation(uint16_t type)
{
	switch (type) {
	case META_RPC_SETATTR: case META_RPC_CREATE: case META_RPC_OPEN: case META_RPC_CLOSE:
	case META_RPC_MKDIR: case META_RPC_RMDIR: case META_RPC_UNLINK: case META_RPC_RENAME:
	case META_RPC_LINK: case META_RPC_SYMLINK: case META_RPC_SETXATTR:
	case META_RPC_REMOVEXATTR: case META_RPC_LAYOUT_SET: case META_RPC_MKNOD:
	case META_RPC_CREATE_DIR: case META_RPC_UNLINK_DIR:
	case META_RPC_IDATA_WRITE: case META_RPC_IDATA_CONVERT:
		return 1;
	}
	return 0;
}

/* ---- field kinds ---- */

static void put_name(struct wire_writer *w, struct meta_name n)
{
	wire_put_blob(w, n.p, (uint32_t)n.n);
}

/* A blob of at most MAX bytes; a longer one that is present in full
 * latches TOO_LONG instead of -CFS_EPROTO. */
static void get_limited(struct wire_reader *r, size_t max, int too_long, const uint8_t **p,
			uint32_t *len)
{
	uint32_t n = 0;
	*p = NULL;
	*len = 0;
	if (wire_get_u32(r, &n))
		return;
	if (n > wire_left(r)) {
		wire_fail(r, -CFS_EPROTO);
		return;
	}
	if (n > max) {
		wire_fail(r, too_long);
		return;
	}
	wire_get_ref(r, n, p);
	*len = n;
}

static void get_name(struct wire_reader *r, struct meta_name *n)
{
	const uint8_t *p;
	uint32_t len;
	get_limited(r, META_NAME_MAX, -ENAMETOOLONG, &p, &len);
	n->p = (const char *)p;
	n->n = len;
}

static void put_len(struct wire_writer *w, int has, const struct meta_length *l)
{
	wire_put_u8(w, has ? 1 : 0);
	wire_put_u64(w, has ? l->length : 0);
	wire_put_u64(w, has ? l->truncate_ver : 0);
}

static void get_len(struct wire_reader *r, int *has, struct meta_length *l)
{
	uint8_t h = 0;
	wire_get_u8(r, &h);
	wire_get_u64(r, &l->length);
	wire_get_u64(r, &l->truncate_ver);
	if (!r->err && h > 1)
		wire_fail(r, -CFS_EPROTO);
	*has = h;
}

static void put_layout(struct wire_writer *w, const struct meta_layout *l)
{
	uint32_t n = l->nchains <= META_MAX_STRIPE ? l->nchains : META_MAX_STRIPE;
	wire_put_u32(w, l->chunk_size);
	wire_put_u32(w, l->stripe);
	wire_put_u32(w, l->table_id);
	wire_put_u64(w, l->seed);
	wire_put_u32(w, n);
	for (uint32_t i = 0; i < n; i++)
		wire_put_u32(w, l->chains[i]);
}

static void get_layout(struct wire_reader *r, struct meta_layout *l)
{
	wire_get_u32(r, &l->chunk_size);
	wire_get_u32(r, &l->stripe);
	wire_get_u32(r, &l->table_id);
	wire_get_u64(r, &l->seed);
	wire_get_u32(r, &l->nchains);
	if (r->err)
		return;
	if (l->nchains > META_MAX_STRIPE || l->nchains > wire_left(r) / 4) {
		l->nchains = 0;
		wire_fail(r, -CFS_EPROTO);
		return;
	}
	for (uint32_t i = 0; i < l->nchains; i++)
		wire_get_u32(r, &l->chains[i]);
}

static void put_inode(struct wire_writer *w, const struct meta_inode *in)
{
	uint32_t tl = in->type == META_T_SYMLINK && in->target_len <= META_SYMLINK_MAX
			      ? in->target_len : 0;
	wire_put_u64(w, in->ino);
	wire_put_u8(w, in->type);
	wire_put_u32(w, in->mode);
	wire_put_u32(w, in->uid);
	wire_put_u32(w, in->gid);
	wire_put_u32(w, in->nlink);
	wire_put_u64(w, in->size);
	wire_put_i64(w, in->atime);
	wire_put_i64(w, in->mtime);
	wire_put_i64(w, in->ctime);
	wire_put_u64(w, in->truncate_ver);
	wire_put_u32(w, in->chains_used);
	wire_put_u64(w, in->parent);
	wire_put_u8(w, in->has_layout ? 1 : 0);
	if (in->has_layout)
		put_layout(w, &in->layout);
	wire_put_blob(w, in->target, tl);
}

static void get_inode(struct wire_reader *r, struct meta_inode *in)
{
	uint8_t hl = 0;
	const uint8_t *t;
	uint32_t tl;
	memset(in, 0, offsetof(struct meta_inode, layout));
	wire_get_u64(r, &in->ino);
	wire_get_u8(r, &in->type);
	wire_get_u32(r, &in->mode);
	wire_get_u32(r, &in->uid);
	wire_get_u32(r, &in->gid);
	wire_get_u32(r, &in->nlink);
	wire_get_u64(r, &in->size);
	wire_get_i64(r, &in->atime);
	wire_get_i64(r, &in->mtime);
	wire_get_i64(r, &in->ctime);
	wire_get_u64(r, &in->truncate_ver);
	wire_get_u32(r, &in->chains_used);
	wire_get_u64(r, &in->parent);
	wire_get_u8(r, &hl);
	if (!r->err && (hl > 1 || in->type < META_T_FILE || in->type > META_T_MAX)) {
		wire_fail(r, -CFS_EPROTO);
		return;
	}
	in->has_layout = hl;
	if (hl)
		get_layout(r, &in->layout);
	else
		in->layout.nchains = 0;
	get_limited(r, META_SYMLINK_MAX, -CFS_EPROTO, &t, &tl);
	if (r->err)
		return;
	memcpy(in->target, t, tl);
	in->target[tl] = 0;
	in->target_len = tl;
	in->rdev = 0; /* from the reply's tail (meta_rpc_resp_decode) */
}

/* A lock request: the holder's owner and the lock (client: the header). */
static void put_lock_req(struct wire_writer *w, const struct meta_lock *l)
{
	wire_put_u64(w, l->owner);
	wire_put_u32(w, l->pid);
	wire_put_u8(w, l->kind);
	wire_put_u8(w, l->type);
	wire_put_u64(w, l->start);
	wire_put_u64(w, l->end);
}

static void get_lock_req(struct wire_reader *r, struct meta_lock *l)
{
	wire_get_u64(r, &l->owner);
	wire_get_u32(r, &l->pid);
	wire_get_u8(r, &l->kind);
	wire_get_u8(r, &l->type);
	wire_get_u64(r, &l->start);
	wire_get_u64(r, &l->end);
}

/* ---- requests ---- */

int meta_rpc_req_encode(struct buf *b, const struct meta_rpc_req *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->uid);
	wire_put_u32(&w, m->gid);
	wire_put_u32(&w, m->ngroups);
	for (uint32_t i = 0; i < m->ngroups && i < META_RPC_GROUPS_MAX; i++)
		wire_put_u32(&w, m->groups[i]);
	wire_put_u64(&w, m->client);
	wire_put_u64(&w, m->seq);
	switch (m->type) {
	case META_RPC_INFO:
	case META_RPC_STATFS:
		break;
	case META_RPC_LOOKUP:
	case META_RPC_RMDIR:
	case META_RPC_UNLINK:
	case META_RPC_UNLINK_DIR:
		wire_put_u64(&w, m->ino);
		put_name(&w, m->name);
		break;
	case META_RPC_GETATTR:
	case META_RPC_READLINK:
	case META_RPC_LAYOUT_GET:
		wire_put_u64(&w, m->ino);
		break;
	case META_RPC_SETATTR:
		wire_put_u64(&w, m->ino);
		wire_put_u32(&w, m->sa.valid);
		wire_put_u32(&w, m->sa.mode);
		wire_put_u32(&w, m->sa.uid);
		wire_put_u32(&w, m->sa.gid);
		wire_put_u64(&w, m->sa.size);
		wire_put_i64(&w, m->sa.atime);
		wire_put_i64(&w, m->sa.mtime);
		wire_put_i64(&w, m->sa.ctime);
		break;
	case META_RPC_CREATE:
	case META_RPC_CREATE_DIR:
		wire_put_u64(&w, m->ino);
		put_name(&w, m->name);
		wire_put_u32(&w, m->mode);
		wire_put_u32(&w, m->flags);
		break;
	case META_RPC_OPEN:
	case META_RPC_ACCESS:
		wire_put_u64(&w, m->ino);
		wire_put_u32(&w, m->flags);
		break;
	case META_RPC_IDATA_WRITE:
		wire_put_u64(&w, m->ino);
		wire_put_u64(&w, m->off);
		wire_put_blob(&w, m->data, m->data_len);
		break;
	case META_RPC_IDATA_READ:
		wire_put_u64(&w, m->ino);
		break;
	case META_RPC_IDATA_CONVERT:
		wire_put_u64(&w, m->ino);
		wire_put_u32(&w, m->count);
		wire_put_u32(&w, m->flags);
		wire_put_u64(&w, m->ver);
		break;
	case META_RPC_CLOSE:
		wire_put_u64(&w, m->ino);
		wire_put_u64(&w, m->ino2);
		put_len(&w, m->has_len, &m->len);
		wire_put_u32(&w, m->flags);
		break;
	case META_RPC_MKDIR:
		wire_put_u64(&w, m->ino);
		put_name(&w, m->name);
		wire_put_u32(&w, m->mode);
		break;
	case META_RPC_MKNOD:
		wire_put_u64(&w, m->ino);
		put_name(&w, m->name);
		wire_put_u32(&w, m->mode);
		wire_put_u64(&w, m->rdev);
		break;
	case META_RPC_RENAME:
		wire_put_u64(&w, m->ino);
		put_name(&w, m->name);
		wire_put_u64(&w, m->ino2);
		put_name(&w, m->name2);
		wire_put_u32(&w, m->flags);
		break;
	case META_RPC_LINK:
		wire_put_u64(&w, m->ino);
		wire_put_u64(&w, m->ino2);
		put_name(&w, m->name);
		break;
	case META_RPC_SYMLINK:
		wire_put_u64(&w, m->ino);
		put_name(&w, m->name);
		wire_put_blob(&w, m->data, m->data_len);
		break;
	case META_RPC_READDIR:
	case META_RPC_LOOKUP_PLUS:
	case META_RPC_GETXATTR:
		wire_put_u64(&w, m->ino);
		put_name(&w, m->name);
		wire_put_u32(&w, m->count);
		break;
	case META_RPC_SETXATTR:
		wire_put_u64(&w, m->ino);
		put_name(&w, m->name);
		wire_put_blob(&w, m->data, m->data_len);
		wire_put_u32(&w, m->flags);
		break;
	case META_RPC_LISTXATTR:
		wire_put_u64(&w, m->ino);
		wire_put_u32(&w, m->count);
		break;
	case META_RPC_REMOVEXATTR:
		wire_put_u64(&w, m->ino);
		put_name(&w, m->name);
		break;
	case META_RPC_SYNC:
	case META_RPC_FSYNC:
		wire_put_u64(&w, m->ino);
		put_len(&w, m->has_len, &m->len);
		wire_put_u8(&w, m->query ? 1 : 0);
		break;
	case META_RPC_LAYOUT_SET:
		wire_put_u64(&w, m->ino);
		wire_put_u32(&w, m->chunk_size);
		wire_put_u32(&w, m->stripe);
		wire_put_u32(&w, m->table_id);
		break;
	case META_RPC_LOCK_SET:
	case META_RPC_LOCK_GET:
		wire_put_u64(&w, m->ino);
		put_lock_req(&w, &m->lock);
		break;
	case META_RPC_LOCK_RELEASE:
		wire_put_u64(&w, m->ino);
		wire_put_u64(&w, m->lock.owner);
		wire_put_u32(&w, m->flags);
		break;
	case META_RPC_DIRVER:
		wire_put_blob(&w, m->data, m->data_len);
		break;
	default:
		return -EINVAL;
	}
	return w.err;
}

int meta_rpc_req_decode(uint16_t type, const void *p, size_t n, struct meta_rpc_req *m)
{
	struct wire_reader r;
	uint8_t q = 0;
	memset(m, 0, sizeof(*m));
	m->type = type;
	if (!meta_rpc_name(type))
		return -CFS_EPROTO;
	wire_reader_init(&r, p, n);
	wire_get_u32(&r, &m->uid);
	wire_get_u32(&r, &m->gid);
	wire_get_u32(&r, &m->ngroups);
	if (r.err)
		return r.err;
	if (m->ngroups > wire_left(&r) / 4) {
		m->ngroups = 0;
		return wire_fail(&r, -CFS_EPROTO);
	}
	if (m->ngroups > META_RPC_GROUPS_MAX) {
		m->ngroups = 0;
		return wire_fail(&r, -EINVAL);
	}
	for (uint32_t i = 0; i < m->ngroups; i++)
		wire_get_u32(&r, &m->groups[i]);
	wire_get_u64(&r, &m->client);
	wire_get_u64(&r, &m->seq);
	switch (type) {
	case META_RPC_INFO:
	case META_RPC_STATFS:
		break;
	case META_RPC_LOOKUP:
	case META_RPC_RMDIR:
	case META_RPC_UNLINK:
	case META_RPC_UNLINK_DIR:
	case META_RPC_REMOVEXATTR:
		wire_get_u64(&r, &m->ino);
		get_name(&r, &m->name);
		break;
	case META_RPC_GETATTR:
	case META_RPC_READLINK:
	case META_RPC_LAYOUT_GET:
		wire_get_u64(&r, &m->ino);
		break;
	case META_RPC_SETATTR:
		wire_get_u64(&r, &m->ino);
		wire_get_u32(&r, &m->sa.valid);
		wire_get_u32(&r, &m->sa.mode);
		wire_get_u32(&r, &m->sa.uid);
		wire_get_u32(&r, &m->sa.gid);
		wire_get_u64(&r, &m->sa.size);
		wire_get_i64(&r, &m->sa.atime);
		wire_get_i64(&r, &m->sa.mtime);
		wire_get_i64(&r, &m->sa.ctime);
		break;
	case META_RPC_CREATE:
	case META_RPC_CREATE_DIR:
		wire_get_u64(&r, &m->ino);
		get_name(&r, &m->name);
		wire_get_u32(&r, &m->mode);
		wire_get_u32(&r, &m->flags);
		break;
	case META_RPC_OPEN:
	case META_RPC_ACCESS:
		wire_get_u64(&r, &m->ino);
		wire_get_u32(&r, &m->flags);
		break;
	case META_RPC_IDATA_WRITE:
		wire_get_u64(&r, &m->ino);
		wire_get_u64(&r, &m->off);
		get_limited(&r, META_IDATA_MAX, -CFS_ENOTINLINE, &m->data, &m->data_len);
		break;
	case META_RPC_IDATA_READ:
		wire_get_u64(&r, &m->ino);
		break;
	case META_RPC_IDATA_CONVERT:
		wire_get_u64(&r, &m->ino);
		wire_get_u32(&r, &m->count);
		wire_get_u32(&r, &m->flags);
		wire_get_u64(&r, &m->ver);
		if (!r.err && m->count != META_RPC_IDATA_BEGIN && m->count != META_RPC_IDATA_COMMIT)
			wire_fail(&r, -EINVAL);
		break;
	case META_RPC_CLOSE:
		wire_get_u64(&r, &m->ino);
		wire_get_u64(&r, &m->ino2);
		get_len(&r, &m->has_len, &m->len);
		/* flags came later: a request without them is an old client's */
		if (!r.err && wire_left(&r) >= 4)
			wire_get_u32(&r, &m->flags);
		break;
	case META_RPC_MKDIR:
		wire_get_u64(&r, &m->ino);
		get_name(&r, &m->name);
		wire_get_u32(&r, &m->mode);
		break;
	case META_RPC_MKNOD:
		wire_get_u64(&r, &m->ino);
		get_name(&r, &m->name);
		wire_get_u32(&r, &m->mode);
		wire_get_u64(&r, &m->rdev);
		break;
	case META_RPC_RENAME:
		wire_get_u64(&r, &m->ino);
		get_name(&r, &m->name);
		wire_get_u64(&r, &m->ino2);
		get_name(&r, &m->name2);
		wire_get_u32(&r, &m->flags);
		break;
	case META_RPC_LINK:
		wire_get_u64(&r, &m->ino);
		wire_get_u64(&r, &m->ino2);
		get_name(&r, &m->name);
		break;
	case META_RPC_SYMLINK:
		wire_get_u64(&r, &m->ino);
		get_name(&r, &m->name);
		get_limited(&r, META_SYMLINK_MAX, -ENAMETOOLONG, &m->data, &m->data_len);
		break;
	case META_RPC_READDIR:
	case META_RPC_LOOKUP_PLUS:
	case META_RPC_GETXATTR:
		wire_get_u64(&r, &m->ino);
		get_name(&r, &m->name);
		wire_get_u32(&r, &m->count);
		if (!r.err && type == META_RPC_READDIR &&
		    (m->count == 0 || m->count > META_RPC_READDIR_MAX))
			wire_fail(&r, -EINVAL);
		if (!r.err && type == META_RPC_LOOKUP_PLUS &&
		    (m->count == 0 || m->count > META_PLUS_MAX))
			wire_fail(&r, -EINVAL);
		break;
	case META_RPC_SETXATTR:
		wire_get_u64(&r, &m->ino);
		get_name(&r, &m->name);
		get_limited(&r, META_XATTR_VALUE_MAX, -E2BIG, &m->data, &m->data_len);
		wire_get_u32(&r, &m->flags);
		break;
	case META_RPC_LISTXATTR:
		wire_get_u64(&r, &m->ino);
		wire_get_u32(&r, &m->count);
		break;
	case META_RPC_SYNC:
	case META_RPC_FSYNC:
		wire_get_u64(&r, &m->ino);
		get_len(&r, &m->has_len, &m->len);
		wire_get_u8(&r, &q);
		if (!r.err && q > 1)
			wire_fail(&r, -CFS_EPROTO);
		m->query = q;
		break;
	case META_RPC_LAYOUT_SET:
		wire_get_u64(&r, &m->ino);
		wire_get_u32(&r, &m->chunk_size);
		wire_get_u32(&r, &m->stripe);
		wire_get_u32(&r, &m->table_id);
		break;
	case META_RPC_LOCK_SET:
	case META_RPC_LOCK_GET:
		wire_get_u64(&r, &m->ino);
		get_lock_req(&r, &m->lock);
		m->lock.client = m->client;
		if (!r.err && meta_lock_check(&m->lock))
			wire_fail(&r, -EINVAL);
		break;
	case META_RPC_LOCK_RELEASE:
		wire_get_u64(&r, &m->ino);
		wire_get_u64(&r, &m->lock.owner);
		wire_get_u32(&r, &m->flags);
		m->lock.client = m->client;
		break;
	case META_RPC_DIRVER:
		get_limited(&r, 8 * META_RPC_DIRVER_MAX, -EINVAL, &m->data, &m->data_len);
		if (!r.err && m->data_len % 8)
			wire_fail(&r, -CFS_EPROTO);
		break;
	}
	return r.err;
}

/* ---- replies ---- */

static int returns_inode(uint16_t type)
{
	switch (type) {
	case META_RPC_LOOKUP: case META_RPC_GETATTR: case META_RPC_SETATTR:
	case META_RPC_CREATE: case META_RPC_OPEN: case META_RPC_MKDIR: case META_RPC_LINK:
	case META_RPC_SYMLINK: case META_RPC_MKNOD: case META_RPC_CREATE_DIR:
	case META_RPC_IDATA_WRITE: case META_RPC_IDATA_READ: case META_RPC_IDATA_CONVERT:
		return 1;
	}
	return 0;
}

/* Replies whose inode tail may carry inline bytes. */
static int returns_idata(uint16_t type)
{
	return type == META_RPC_OPEN || type == META_RPC_CREATE || type == META_RPC_IDATA_READ ||
	       type == META_RPC_IDATA_CONVERT;
}

int meta_rpc_resp_encode(struct buf *b, const struct meta_rpc_resp *m)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	if (returns_inode(m->type)) {
		if (!m->inode)
			return -EINVAL;
		put_inode(&w, m->inode);
	}
	switch (m->type) {
	case META_RPC_INFO:
		wire_put_u64(&w, m->instance_id);
		wire_put_u32(&w, m->threads);
		break;
	case META_RPC_CREATE:
	case META_RPC_OPEN:
		wire_put_u64(&w, m->session);
		break;
	case META_RPC_CREATE_DIR:
		wire_put_u64(&w, m->session);
		/* fall through */
	case META_RPC_UNLINK_DIR:
		if (!m->dir)
			return -EINVAL;
		put_inode(&w, m->dir);
		break;
	case META_RPC_READLINK:
		wire_put_blob(&w, m->data, m->data_len);
		break;
	case META_RPC_READDIR:
		wire_put_u8(&w, m->eof ? 1 : 0);
		wire_put_u32(&w, (uint32_t)m->n);
		for (int i = 0; i < m->n; i++) {
			wire_put_u64(&w, m->ents[i].ino);
			wire_put_u8(&w, m->ents[i].type);
			wire_put_blob(&w, m->ents[i].name, m->ents[i].name_len);
		}
		break;
	case META_RPC_GETXATTR:
	case META_RPC_LISTXATTR:
		wire_put_u64(&w, m->size);
		wire_put_blob(&w, m->data, m->data_len);
		break;
	case META_RPC_STATFS:
		wire_put_u64(&w, m->statfs.total_bytes);
		wire_put_u64(&w, m->statfs.free_bytes);
		wire_put_u64(&w, m->statfs.ids_allocated);
		break;
	case META_RPC_SYNC:
	case META_RPC_FSYNC:
		wire_put_u64(&w, m->size);
		break;
	case META_RPC_LAYOUT_GET:
		wire_put_u8(&w, m->has_layout ? 1 : 0);
		if (m->has_layout)
			put_layout(&w, m->layout);
		break;
	case META_RPC_DIRVER:
		wire_put_blob(&w, m->data, m->data_len);
		break;
	case META_RPC_LOOKUP_PLUS:
		wire_put_u8(&w, m->eof ? 1 : 0);
		wire_put_u32(&w, (uint32_t)m->n);
		wire_put_blob(&w, m->data, m->data_len);
		break;
	case META_RPC_LOCK_GET:
		wire_put_u8(&w, m->has_lock ? 1 : 0);
		if (m->has_lock) {
			wire_put_u64(&w, m->lock.client);
			put_lock_req(&w, &m->lock);
		}
		break;
	}
	if (returns_inode(m->type)) {
		wire_put_u64(&w, m->inode->rdev); /* inode tail, see meta_proto.h */
		wire_put_u8(&w, m->inode->idata ? 1 : 0);
		if (returns_idata(m->type)) {
			wire_put_u8(&w, m->has_idata ? 1 : 0);
			if (m->has_idata) {
				wire_put_u64(&w, m->idata_ver);
				wire_put_u32(&w, m->idata_flags);
				wire_put_blob(&w, m->idata, m->idata_len);
			}
		}
	}
	return w.err;
}

#define DIRENT_MIN_WIRE 13 /* u64 ino, u8 type, u32 name length */

/* LOOKUP_PLUS entries: a name blob, an inode, its tail (rdev, inline flag). */
#define PLUS_DATA_MAX (1u << 22) /* the server stops well before (META_PLUS_REPLY_MAX) */

int meta_rpc_plus_put(struct buf *b, const struct meta_dirent *de, const struct meta_inode *in)
{
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_blob(&w, de->name, de->name_len);
	put_inode(&w, in);
	wire_put_u64(&w, in->rdev);
	wire_put_u8(&w, in->idata ? 1 : 0);
	return w.err;
}

int meta_rpc_plus_next(const uint8_t **p, size_t *n, struct meta_dirent *de,
		       struct meta_inode *in)
{
	struct wire_reader r;
	const uint8_t *np;
	uint32_t nl;
	uint8_t u8 = 0;
	uint64_t rdev = 0;
	wire_reader_init(&r, *p, *n);
	get_limited(&r, META_NAME_MAX, -CFS_EPROTO, &np, &nl);
	if (!r.err && nl == 0)
		wire_fail(&r, -CFS_EPROTO);
	get_inode(&r, in);
	wire_get_u64(&r, &rdev);
	wire_get_u8(&r, &u8);
	if (!r.err && u8 > 1)
		wire_fail(&r, -CFS_EPROTO);
	if (r.err)
		return -CFS_EPROTO;
	in->rdev = rdev;
	in->idata = u8;
	memcpy(de->name, np, nl);
	de->name[nl] = 0;
	de->name_len = (uint8_t)nl;
	de->ino = in->ino;
	de->type = in->type;
	*n -= (size_t)(r.p - *p);
	*p = r.p;
	return 0;
}

/* 0 when P..P+N holds exactly CNT well-formed entries. */
static int plus_check(const uint8_t *p, size_t n, uint32_t cnt)
{
	struct meta_inode *in = malloc(sizeof(*in));
	struct meta_dirent de;
	int rc = in ? 0 : -ENOMEM;
	for (uint32_t i = 0; i < cnt && !rc; i++)
		rc = meta_rpc_plus_next(&p, &n, &de, in);
	free(in);
	return rc ? rc : n ? -CFS_EPROTO : 0;
}

int meta_rpc_resp_decode(const void *p, size_t n, struct meta_rpc_resp *m)
{
	struct wire_reader r;
	uint8_t u8 = 0;
	uint32_t cnt = 0;
	struct meta_inode *in = m->inode;
	struct meta_dirent *ents = m->ents;
	struct meta_layout *lay = m->layout;
	struct meta_inode *dir = m->dir;
	int cap = m->ents_cap;
	uint16_t type = m->type;

	memset(m, 0, sizeof(*m));
	m->type = type;
	m->inode = in;
	m->ents = ents;
	m->ents_cap = cap;
	m->layout = lay;
	m->dir = dir;
	if (!meta_rpc_name(type))
		return -CFS_EPROTO;
	wire_reader_init(&r, p, n);
	if (returns_inode(type)) {
		if (in) {
			get_inode(&r, in);
		} else {
			struct meta_inode *tmp = malloc(sizeof(*tmp));
			if (!tmp)
				return -ENOMEM;
			get_inode(&r, tmp);
			free(tmp);
		}
	}
	switch (type) {
	case META_RPC_INFO:
		wire_get_u64(&r, &m->instance_id);
		wire_get_u32(&r, &m->threads);
		break;
	case META_RPC_CREATE:
	case META_RPC_OPEN:
		wire_get_u64(&r, &m->session);
		break;
	case META_RPC_CREATE_DIR:
	case META_RPC_UNLINK_DIR:
		if (type == META_RPC_CREATE_DIR)
			wire_get_u64(&r, &m->session);
		if (dir) {
			get_inode(&r, dir);
		} else {
			struct meta_inode *tmp = malloc(sizeof(*tmp));
			if (!tmp)
				return -ENOMEM;
			get_inode(&r, tmp);
			free(tmp);
		}
		break;
	case META_RPC_READLINK:
		get_limited(&r, META_SYMLINK_MAX, -CFS_EPROTO, &m->data, &m->data_len);
		break;
	case META_RPC_READDIR:
		wire_get_u8(&r, &u8);
		wire_get_u32(&r, &cnt);
		if (r.err)
			break;
		if (u8 > 1 || cnt > META_RPC_READDIR_MAX || cnt > wire_left(&r) / DIRENT_MIN_WIRE ||
		    (cnt && (!ents || (int)cnt > cap))) {
			wire_fail(&r, -CFS_EPROTO);
			break;
		}
		m->eof = u8;
		for (uint32_t i = 0; i < cnt && !r.err; i++) {
			const uint8_t *np;
			uint32_t nl;
			wire_get_u64(&r, &ents[i].ino);
			wire_get_u8(&r, &ents[i].type);
			get_limited(&r, META_NAME_MAX, -CFS_EPROTO, &np, &nl);
			if (r.err)
				break;
			memcpy(ents[i].name, np, nl);
			ents[i].name[nl] = 0;
			ents[i].name_len = (uint8_t)nl;
		}
		if (r.err)
			cnt = 0;
		m->n = (int)cnt;
		break;
	case META_RPC_GETXATTR:
	case META_RPC_LISTXATTR:
		wire_get_u64(&r, &m->size);
		get_limited(&r, type == META_RPC_GETXATTR ? META_XATTR_VALUE_MAX : META_RPC_LIST_MAX,
			    -CFS_EPROTO, &m->data, &m->data_len);
		break;
	case META_RPC_STATFS:
		wire_get_u64(&r, &m->statfs.total_bytes);
		wire_get_u64(&r, &m->statfs.free_bytes);
		wire_get_u64(&r, &m->statfs.ids_allocated);
		break;
	case META_RPC_SYNC:
	case META_RPC_FSYNC:
		wire_get_u64(&r, &m->size);
		break;
	case META_RPC_LAYOUT_GET:
		wire_get_u8(&r, &u8);
		if (!r.err && u8 > 1)
			wire_fail(&r, -CFS_EPROTO);
		m->has_layout = u8;
		if (u8) {
			struct meta_layout tmp;
			get_layout(&r, lay ? lay : &tmp);
		}
		break;
	case META_RPC_DIRVER:
		get_limited(&r, 8 * META_RPC_DIRVER_MAX, -CFS_EPROTO, &m->data, &m->data_len);
		if (!r.err && m->data_len % 8)
			wire_fail(&r, -CFS_EPROTO);
		break;
	case META_RPC_LOOKUP_PLUS:
		wire_get_u8(&r, &u8);
		wire_get_u32(&r, &cnt);
		get_limited(&r, PLUS_DATA_MAX, -CFS_EPROTO, &m->data, &m->data_len);
		if (!r.err && (u8 > 1 || cnt > META_PLUS_MAX))
			wire_fail(&r, -CFS_EPROTO);
		if (!r.err && plus_check(m->data, m->data_len, cnt))
			wire_fail(&r, -CFS_EPROTO);
		m->eof = u8;
		m->n = r.err ? 0 : (int)cnt;
		break;
	case META_RPC_LOCK_GET:
		wire_get_u8(&r, &u8);
		if (!r.err && u8 > 1)
			wire_fail(&r, -CFS_EPROTO);
		m->has_lock = u8;
		if (u8) {
			wire_get_u64(&r, &m->lock.client);
			get_lock_req(&r, &m->lock);
			if (!r.err && (meta_lock_check(&m->lock) || m->lock.type == META_LOCK_UN))
				wire_fail(&r, -CFS_EPROTO);
		}
		break;
	}
	if (returns_inode(type) && !r.err && wire_left(&r) >= 8) {
		uint64_t rdev = 0;
		wire_get_u64(&r, &rdev);
		if (in)
			in->rdev = rdev;
		/* later tail fields: absent from older servers */
		if (!r.err && wire_left(&r) >= 1) {
			wire_get_u8(&r, &u8);
			if (!r.err && u8 > 1)
				wire_fail(&r, -CFS_EPROTO);
			if (in)
				in->idata = u8;
		}
		if (!r.err && returns_idata(type) && wire_left(&r) >= 1) {
			wire_get_u8(&r, &u8);
			if (!r.err && u8 > 1)
				wire_fail(&r, -CFS_EPROTO);
			m->has_idata = u8;
			if (u8) {
				wire_get_u64(&r, &m->idata_ver);
				wire_get_u32(&r, &m->idata_flags);
				get_limited(&r, META_IDATA_MAX, -CFS_EPROTO, &m->idata, &m->idata_len);
			}
		}
	}
	return r.err;
}
