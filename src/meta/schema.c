/* schema.c - key builders and record codecs for the metadata service.
 *
 * Every record is header + body + CRC32C (layout in schema.h). Encoding
 * goes through wire_writer into a struct buf; decoding first checks the
 * length, CRC, magic and version, then reads the body with a latched
 * wire_reader bounded to [header end, crc), so a malformed body can only
 * produce -CFS_ECORRUPT. Bytes after the known body (a newer version's
 * fields) are ignored.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/status.h"
#include "common/wire.h"
#include "meta/layout.h"
#include "meta/schema.h"

#define REC_VERSION 1
#define REC_HDR 8

static const char MAGIC_INODE[4] = { 'C', 'F', 'S', 'I' };
static const char MAGIC_DENTRY[4] = { 'C', 'F', 'S', 'D' };
static const char MAGIC_XATTR[4] = { 'C', 'F', 'S', 'X' };
static const char MAGIC_SESSION[4] = { 'C', 'F', 'S', 'S' };
static const char MAGIC_GC[4] = { 'C', 'F', 'S', 'G' };
static const char MAGIC_IDEM[4] = { 'C', 'F', 'S', 'R' };
static const char MAGIC_IDAL[4] = { 'C', 'F', 'S', 'A' };
static const char MAGIC_IDATA[4] = { 'C', 'F', 'S', 'N' };

/* ---- keys ---- */

static void key_prefix(struct meta_key *k, const char *pfx)
{
	memcpy(k->b, pfx, 4);
	k->n = 4;
}

static void key_u64(struct meta_key *k, uint64_t v)
{
	wire_store_be64(k->b + k->n, v);
	k->n += 8;
}

static void key_bytes(struct meta_key *k, const void *p, size_t n)
{
	if (n > META_NAME_MAX)
		n = META_NAME_MAX;
	memcpy(k->b + k->n, p, n);
	k->n += (uint32_t)n;
}

void meta_key_inode(struct meta_key *k, uint64_t ino)
{
	key_prefix(k, "INOD");
	key_u64(k, ino);
}

void meta_key_dentry(struct meta_key *k, uint64_t parent, const void *name, size_t n)
{
	key_prefix(k, "DENT");
	key_u64(k, parent);
	key_bytes(k, name, n);
}

/* Both ends of an id-scoped range: [pfx id, pfx id+1). id+1 never wraps for
 * real ids (the allocator stays far below 2^64). */
static void id_range(struct meta_key *b, struct meta_key *e, const char *pfx, uint64_t id)
{
	key_prefix(b, pfx);
	key_u64(b, id);
	key_prefix(e, pfx);
	key_u64(e, id + 1);
}

void meta_key_dir_range(struct meta_key *b, struct meta_key *e, uint64_t dir)
{
	id_range(b, e, "DENT", dir);
}

void meta_key_xattr(struct meta_key *k, uint64_t ino, const void *name, size_t n)
{
	key_prefix(k, "XATR");
	key_u64(k, ino);
	key_bytes(k, name, n);
}

void meta_key_xattr_range(struct meta_key *b, struct meta_key *e, uint64_t ino)
{
	id_range(b, e, "XATR", ino);
}

void meta_key_session(struct meta_key *k, uint64_t ino, uint64_t client, uint64_t session)
{
	key_prefix(k, "SESS");
	key_u64(k, ino);
	key_u64(k, client);
	key_u64(k, session);
}

void meta_key_session_range(struct meta_key *b, struct meta_key *e, uint64_t ino)
{
	id_range(b, e, "SESS", ino);
}

void meta_key_gc(struct meta_key *k, uint64_t ino)
{
	key_prefix(k, "GCQU");
	key_u64(k, ino);
}

void meta_key_idem(struct meta_key *k, uint64_t client, uint64_t seq)
{
	key_prefix(k, "IDEM");
	key_u64(k, client);
	key_u64(k, seq);
}

void meta_key_idalloc(struct meta_key *k)
{
	key_prefix(k, "IDAL");
}

void meta_key_idata(struct meta_key *k, uint64_t ino)
{
	key_prefix(k, "IDAT");
	key_u64(k, ino);
}

void meta_key_dirstat(struct meta_key *k, uint64_t dir, enum meta_dirstat_kind kind,
		      uint8_t shard)
{
	key_prefix(k, "DSTA");
	key_u64(k, dir);
	k->b[k->n++] = (uint8_t)kind;
	k->b[k->n++] = shard;
}

void meta_key_dirstat_kind_range(struct meta_key *b, struct meta_key *e, uint64_t dir,
				 enum meta_dirstat_kind kind)
{
	key_prefix(b, "DSTA");
	key_u64(b, dir);
	b->b[b->n++] = (uint8_t)kind;
	key_prefix(e, "DSTA");
	key_u64(e, dir);
	e->b[e->n++] = (uint8_t)(kind + 1);
}

void meta_key_dirstat_range(struct meta_key *b, struct meta_key *e, uint64_t dir)
{
	id_range(b, e, "DSTA", dir);
}

void meta_key_prefix_range(struct meta_key *b, struct meta_key *e, const char prefix[4])
{
	memcpy(b->b, prefix, 4);
	b->n = 4;
	memcpy(e->b, prefix, 4);
	e->b[3]++; /* prefixes are ASCII letters: no carry */
	e->n = 4;
}

/* ---- record framing ---- */

static void rec_begin(struct wire_writer *w, struct buf *b, const char magic[4], uint8_t k0,
		      uint8_t k1)
{
	buf_reset(b);
	wire_writer_init(w, b);
	wire_put_bytes(w, magic, 4);
	wire_put_u16(w, REC_VERSION);
	wire_put_u8(w, k0);
	wire_put_u8(w, k1);
}

static int rec_end(struct wire_writer *w)
{
	if (w->err)
		return w->err;
	wire_put_u32(w, crc32c(0, w->b->data, w->b->len));
	return w->err;
}

/* Checks framing; on success R reads the body and K0/K1 hold the kind bytes. */
static int rec_open(const void *p, size_t n, const char magic[4], struct wire_reader *r,
		    uint8_t *k0, uint8_t *k1)
{
	const uint8_t *b = p;
	if (!p || n < REC_HDR + 4)
		return -CFS_ECORRUPT;
	if (memcmp(b, magic, 4) != 0)
		return -CFS_ECORRUPT;
	if (wire_load_u32(b + n - 4) != crc32c(0, b, n - 4))
		return -CFS_ECORRUPT;
	if (wire_load_u16(b + 4) < REC_VERSION)
		return -CFS_ECORRUPT;
	if (k0)
		*k0 = b[6];
	if (k1)
		*k1 = b[7];
	wire_reader_init(r, b + REC_HDR, n - REC_HDR - 4);
	return 0;
}

static int rec_done(struct wire_reader *r)
{
	return r->err ? -CFS_ECORRUPT : 0;
}

/* ---- inode ---- */

#define INODE_F_LAYOUT 1
#define INODE_F_IDATA 2

int meta_inode_encode(const struct meta_inode *in, struct buf *b)
{
	struct wire_writer w;
	rec_begin(&w, b, MAGIC_INODE, in->type,
		  (in->has_layout ? INODE_F_LAYOUT : 0) |
		  (in->idata && in->type == META_T_FILE ? INODE_F_IDATA : 0));
	wire_put_u64(&w, in->ino);
	wire_put_u32(&w, in->mode);
	wire_put_u32(&w, in->uid);
	wire_put_u32(&w, in->gid);
	wire_put_u32(&w, in->nlink);
	wire_put_u64(&w, in->size);
	wire_put_i64(&w, in->atime);
	wire_put_i64(&w, in->mtime);
	wire_put_i64(&w, in->ctime);
	wire_put_u64(&w, in->truncate_ver);
	wire_put_u32(&w, in->chains_used);
	wire_put_u64(&w, in->parent);
	if (in->has_layout) {
		const struct meta_layout *l = &in->layout;
		wire_put_u32(&w, l->chunk_size);
		wire_put_u32(&w, l->stripe);
		wire_put_u32(&w, l->table_id);
		wire_put_u64(&w, l->seed);
		wire_put_u32(&w, l->nchains);
		for (uint32_t i = 0; i < l->nchains && i < META_MAX_STRIPE; i++)
			wire_put_u32(&w, l->chains[i]);
	}
	if (in->type == META_T_SYMLINK)
		wire_put_blob(&w, in->target, in->target_len);
	if (meta_type_special(in->type))
		wire_put_u64(&w, in->rdev);
	return rec_end(&w);
}

/* meta_inode_copy copies by position: the fields before `layout` in one
 * memcpy, the layout's head and used chains, the symlink target's used
 * bytes, and everything after the target (rdev, and any field added
 * there) in one memcpy each. Only a field put between `layout` and
 * `target` would be left out; these stop the build instead. */
_Static_assert(offsetof(struct meta_inode, target_len) ==
                       offsetof(struct meta_inode, layout) + sizeof(struct meta_layout) &&
                   offsetof(struct meta_inode, target) ==
                       offsetof(struct meta_inode, target_len) + sizeof(uint32_t),
               "meta_inode_copy: a field between `layout` and `target` must be copied there");

void meta_inode_copy(struct meta_inode *dst, const struct meta_inode *src)
{
	memcpy(dst, src, offsetof(struct meta_inode, layout));
	if (src->has_layout) {
		uint32_t nc = src->layout.nchains <= META_MAX_STRIPE ? src->layout.nchains : 0;
		size_t lt = offsetof(struct meta_layout, chains) + sizeof(src->layout.chains);
		memcpy(&dst->layout, &src->layout, offsetof(struct meta_layout, chains));
		dst->layout.nchains = nc;
		memcpy(dst->layout.chains, src->layout.chains, nc * sizeof(src->layout.chains[0]));
		memcpy((char *)&dst->layout + lt, (const char *)&src->layout + lt,
		       sizeof(src->layout) - lt);
	} else {
		dst->layout.nchains = 0;
	}
	uint32_t tl = src->type == META_T_SYMLINK && src->target_len <= META_SYMLINK_MAX
			      ? src->target_len : 0;
	memcpy(dst->target, src->target, tl);
	dst->target[tl] = 0;
	dst->target_len = tl;
	size_t tail = offsetof(struct meta_inode, target) + sizeof(src->target);
	memcpy((char *)dst + tail, (const char *)src + tail, sizeof(*src) - tail);
}

int meta_inode_decode(const void *p, size_t n, struct meta_inode *out)
{
	struct wire_reader r;
	uint8_t type, flags;
	int rc = rec_open(p, n, MAGIC_INODE, &r, &type, &flags);
	if (rc)
		return rc;
	memset(out, 0, offsetof(struct meta_inode, layout));
	out->has_layout = 0;
	out->layout.nchains = 0;
	out->target_len = 0;
	out->target[0] = 0;
	out->rdev = 0;
	if (type < META_T_FILE || type > META_T_MAX || (flags & ~(INODE_F_LAYOUT | INODE_F_IDATA)) ||
	    ((flags & INODE_F_IDATA) && type != META_T_FILE))
		return -CFS_ECORRUPT;
	out->type = type;
	out->idata = (flags & INODE_F_IDATA) != 0;
	wire_get_u64(&r, &out->ino);
	wire_get_u32(&r, &out->mode);
	wire_get_u32(&r, &out->uid);
	wire_get_u32(&r, &out->gid);
	wire_get_u32(&r, &out->nlink);
	wire_get_u64(&r, &out->size);
	wire_get_i64(&r, &out->atime);
	wire_get_i64(&r, &out->mtime);
	wire_get_i64(&r, &out->ctime);
	wire_get_u64(&r, &out->truncate_ver);
	wire_get_u32(&r, &out->chains_used);
	wire_get_u64(&r, &out->parent);
	if (r.err || out->ino == 0 || (out->mode & ~07777u))
		return -CFS_ECORRUPT;
	if (flags & INODE_F_LAYOUT) {
		struct meta_layout *l = &out->layout;
		out->has_layout = 1;
		wire_get_u32(&r, &l->chunk_size);
		wire_get_u32(&r, &l->stripe);
		wire_get_u32(&r, &l->table_id);
		wire_get_u64(&r, &l->seed);
		wire_get_u32(&r, &l->nchains);
		if (r.err || !meta_layout_chunk_ok(l->chunk_size) || l->stripe == 0 ||
		    l->stripe > META_MAX_STRIPE || (l->nchains != 0 && l->nchains != l->stripe))
			return -CFS_ECORRUPT;
		for (uint32_t i = 0; i < l->nchains; i++)
			wire_get_u32(&r, &l->chains[i]);
	}
	if (type == META_T_FILE && (!out->has_layout || out->layout.nchains == 0 ||
				    out->chains_used > out->layout.stripe))
		return -CFS_ECORRUPT;
	if (type == META_T_SYMLINK) {
		const uint8_t *t;
		uint32_t len;
		if (wire_get_blob(&r, META_SYMLINK_MAX, &t, &len) || len == 0 ||
		    memchr(t, 0, len))
			return -CFS_ECORRUPT;
		memcpy(out->target, t, len);
		out->target[len] = 0;
		out->target_len = len;
	}
	if (meta_type_special(type) && (out->has_layout || wire_get_u64(&r, &out->rdev)))
		return -CFS_ECORRUPT;
	return rec_done(&r);
}

/* ---- small records ---- */

int meta_dentry_encode(const struct meta_dentry *d, struct buf *b)
{
	struct wire_writer w;
	rec_begin(&w, b, MAGIC_DENTRY, 0, 0);
	wire_put_u64(&w, d->ino);
	wire_put_u8(&w, d->type);
	wire_put_u8(&w, 0);
	wire_put_u16(&w, 0);
	return rec_end(&w);
}

int meta_dentry_decode(const void *p, size_t n, struct meta_dentry *out)
{
	struct wire_reader r;
	int rc = rec_open(p, n, MAGIC_DENTRY, &r, NULL, NULL);
	if (rc)
		return rc;
	wire_get_u64(&r, &out->ino);
	wire_get_u8(&r, &out->type);
	if (r.err || out->ino == 0 || out->type < META_T_FILE || out->type > META_T_MAX)
		return -CFS_ECORRUPT;
	return rec_done(&r);
}

int meta_xattr_encode(const void *val, size_t len, struct buf *b)
{
	struct wire_writer w;
	if (len > META_XATTR_VALUE_MAX)
		return -EINVAL;
	rec_begin(&w, b, MAGIC_XATTR, 0, 0);
	wire_put_blob(&w, val, (uint32_t)len);
	return rec_end(&w);
}

int meta_xattr_decode(const void *p, size_t n, const uint8_t **val, uint32_t *len)
{
	struct wire_reader r;
	int rc = rec_open(p, n, MAGIC_XATTR, &r, NULL, NULL);
	if (rc)
		return rc;
	if (wire_get_blob(&r, META_XATTR_VALUE_MAX, val, len))
		return -CFS_ECORRUPT;
	return 0;
}

int meta_session_encode(const struct meta_session_rec *s, struct buf *b)
{
	struct wire_writer w;
	rec_begin(&w, b, MAGIC_SESSION, 0, 0);
	wire_put_u64(&w, s->client);
	wire_put_u64(&w, s->session);
	wire_put_i64(&w, s->opened);
	return rec_end(&w);
}

int meta_session_decode(const void *p, size_t n, struct meta_session_rec *out)
{
	struct wire_reader r;
	int rc = rec_open(p, n, MAGIC_SESSION, &r, NULL, NULL);
	if (rc)
		return rc;
	wire_get_u64(&r, &out->client);
	wire_get_u64(&r, &out->session);
	wire_get_i64(&r, &out->opened);
	return rec_done(&r);
}

int meta_gc_encode(const struct meta_gc_rec *g, struct buf *b)
{
	struct wire_writer w;
	rec_begin(&w, b, MAGIC_GC, 0, 0);
	wire_put_u64(&w, g->ino);
	wire_put_i64(&w, g->enqueued);
	wire_put_u64(&w, g->claim_owner);
	wire_put_i64(&w, g->claim_until);
	return rec_end(&w);
}

int meta_gc_decode(const void *p, size_t n, struct meta_gc_rec *out)
{
	struct wire_reader r;
	int rc = rec_open(p, n, MAGIC_GC, &r, NULL, NULL);
	if (rc)
		return rc;
	wire_get_u64(&r, &out->ino);
	wire_get_i64(&r, &out->enqueued);
	wire_get_u64(&r, &out->claim_owner);
	wire_get_i64(&r, &out->claim_until);
	if (!r.err && out->ino == 0)
		return -CFS_ECORRUPT;
	return rec_done(&r);
}

int meta_idem_encode(const struct meta_idem_rec *ir, struct buf *b)
{
	struct wire_writer w;
	rec_begin(&w, b, MAGIC_IDEM, 0, 0);
	wire_put_u32(&w, ir->op);
	wire_put_i32(&w, ir->result);
	wire_put_u64(&w, ir->ino);
	wire_put_u64(&w, ir->aux);
	wire_put_i64(&w, ir->written);
	return rec_end(&w);
}

int meta_idem_decode(const void *p, size_t n, struct meta_idem_rec *out)
{
	struct wire_reader r;
	int rc = rec_open(p, n, MAGIC_IDEM, &r, NULL, NULL);
	if (rc)
		return rc;
	wire_get_u32(&r, &out->op);
	wire_get_i32(&r, &out->result);
	wire_get_u64(&r, &out->ino);
	wire_get_u64(&r, &out->aux);
	wire_get_i64(&r, &out->written);
	if (!r.err && (out->result > 0 || out->result < -4095))
		return -CFS_ECORRUPT;
	return rec_done(&r);
}

int meta_idalloc_encode(uint64_t next, struct buf *b)
{
	struct wire_writer w;
	rec_begin(&w, b, MAGIC_IDAL, 0, 0);
	wire_put_u64(&w, next);
	return rec_end(&w);
}

int meta_idalloc_decode(const void *p, size_t n, uint64_t *next)
{
	struct wire_reader r;
	int rc = rec_open(p, n, MAGIC_IDAL, &r, NULL, NULL);
	if (rc)
		return rc;
	wire_get_u64(&r, next);
	if (!r.err && *next < META_FIRST_INO)
		return -CFS_ECORRUPT;
	return rec_done(&r);
}

/* ---- inline data ---- */

int meta_idata_encode(const struct meta_idata_rec *r, struct buf *b)
{
	struct wire_writer w;
	if (r->len > META_IDATA_MAX)
		return -EINVAL;
	rec_begin(&w, b, MAGIC_IDATA, 0, 0);
	wire_put_u64(&w, r->ver);
	wire_put_u64(&w, r->conv_owner);
	wire_put_i64(&w, r->conv_until);
	wire_put_u32(&w, r->flags);
	wire_put_blob(&w, r->data, r->len);
	return rec_end(&w);
}

int meta_idata_decode(const void *p, size_t n, struct meta_idata_rec *out)
{
	struct wire_reader r;
	int rc = rec_open(p, n, MAGIC_IDATA, &r, NULL, NULL);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	wire_get_u64(&r, &out->ver);
	wire_get_u64(&r, &out->conv_owner);
	wire_get_i64(&r, &out->conv_until);
	wire_get_u32(&r, &out->flags);
	if (wire_get_blob(&r, META_IDATA_MAX, &out->data, &out->len))
		return -CFS_ECORRUPT;
	return rec_done(&r);
}
