/* meta_proto.c - codecs of the metadata-service messages (meta_proto.h;
 * layouts in the catalog in net/rpc_proto.h).
 *
 * Every message is declared once, as one row of the table `msgs` below: its
 * type, name, whether it mutates, and the fields of its request (after the
 * common header) and of its reply, each in wire order. One interpreter
 * writes any field list (put_fields) and one reads it (get_fields), so a
 * message's encoder and decoder cannot drift apart, and each limit (name
 * bound, blob size, count range, optional tail) sits on the field it
 * bounds. meta_rpc_name, meta_rpc_is_mutation, the fuzz corpus generator
 * (tests/meta/gen_meta_proto_corpus.c, which walks every named type) and
 * the codecs all read the same row.
 *
 * HOW TO ADD A MESSAGE (say type 270, FOO):
 *  1. meta_proto.h: META_RPC_FOO = 270 in its block's enum (move the
 *     block's LAST macro so the fuzz target reaches it), its layout in the
 *     catalog (net/rpc_proto.h), and any new member of meta_rpc_req /
 *     meta_rpc_resp.
 *  2. Here: one row in `msgs`, kept in type order, e.g.
 *       { MSG(META_RPC_FOO, "FOO", MUT),
 *         .req = { Q(U64, ino), Q(NAME, name), QRANGE(count, 1, 64, -EINVAL) },
 *         .resp = { A(INODE, inode), INODE_TAIL } },
 *     Nothing else in this file changes. Field kinds: enum fkind; field
 *     macros: below it. A rule across fields (the lock checks) goes in a
 *     .req_check / .resp_check hook, which runs after the fields.
 *  3. A field added to an existing message goes at the end of its list as
 *     QOPT / AOPT (an optional tail field): old peers omit it, and the
 *     decoder leaves it 0 when the bytes end before it.
 *  4. Rerun gen_meta_proto_corpus DIR to seed the fuzz corpus
 *     (tests/fuzz/corpus/meta_proto) with the new type.
 * Converting a switch-style case: wire_put_u64(&w, m->ino) /
 * wire_get_u64(&r, &m->ino) -> Q(U64, ino); put_name / get_name ->
 * Q(NAME, name); get_limited(&r, MAX, ERR, &m->data, &m->data_len) ->
 * QBLOB(data, MAX, ERR, 1); "if (!r.err && wire_left(&r) >= 4) get" ->
 * QOPT(U32, ...); "if (!r.err && (m->count < LO || m->count > HI))
 * wire_fail(&r, ERR)" after the last field -> QRANGE(count, LO, HI, ERR);
 * a type added to the old returns_inode() -> A(INODE, inode) first and
 * INODE_TAIL last (then IDATA_TAIL if also in returns_idata()); one added
 * to meta_rpc_is_mutation() -> MUT; a new names[] entry -> the row's name.
 * Then `scripts/meta-proto-diff.sh BRANCH` compares the branch's switch
 * codecs with the rows byte for byte (it must print no difference).
 *
 * Decoders read through a wire_reader and check once at the end (the
 * reader latches the first error). Counts are checked against their limit
 * and against the bytes present before any loop uses them, so a hostile
 * count can neither overrun a caller array nor spin. An over-limit field in
 * an otherwise sound payload latches the POSIX code the operation would
 * return (the reader keeps the first error, so a later truncation does not
 * mask it and vice versa); count ranges are checked after the last field,
 * so a truncated message is -CFS_EPROTO whatever its count.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "common/wire.h"
#include "meta/meta_proto.h"

/* ---- field lists ---- */

enum fkind {
	FK_END,    /* ends a list (the rest of a row's array is zero) */
	FK_U8,     /* uint8_t member */
	FK_U32,    /* uint32_t member */
	FK_U64,    /* uint64_t member */
	FK_I64,    /* int64_t member */
	FK_BOOL,   /* int member as u8 0/1 (another value: -CFS_EPROTO); with
		    * .cond = N the next N fields travel only when it is set */
	FK_NAME,   /* struct meta_name: u32 length, bytes; over META_NAME_MAX
		    * bytes: -ENAMETOOLONG */
	FK_BLOB,   /* const uint8_t *member and uint32_t member_len (.off2):
		    * u32 length, bytes; over .max: .err; a length that is not
		    * a multiple of .unit: -CFS_EPROTO */
	FK_LEN,    /* int has_len, struct meta_length len (.off2): u8 has,
		    * u64 length, u64 truncate_ver (zeros when not has) */
	FK_INODE,  /* struct meta_inode *member: an inode record (put_inode);
		    * NULL: the encoder fails -EINVAL, the decoder checks the
		    * record and drops it */
	FK_LAYOUT, /* struct meta_layout *member: a layout record, likewise */
	FK_RDEV,   /* inode tail, member the inode pointer: u64 rdev */
	FK_IFLAG,  /* inode tail, member the inode pointer: u8 0/1 idata */
	FK_DIRENTS,/* READDIR reply: u8 eof, u32 n, n x (u64 ino, u8 type, name) */
	FK_PLUS,   /* LOOKUP_PLUS reply: u8 eof, u32 n, blob of n entries */
	FK_PLUSD,  /* LOOKUP_PLUSD reply: likewise, entries with their bytes */
	FK_COUNT_
};

/* Fewest bytes of each kind: an optional field with fewer bytes left is absent. */
static const uint8_t fk_min[FK_COUNT_] = {
	[FK_U8] = 1, [FK_U32] = 4, [FK_U64] = 8, [FK_I64] = 8, [FK_BOOL] = 1, [FK_NAME] = 4,
	[FK_BLOB] = 4, [FK_LEN] = 17, [FK_RDEV] = 8, [FK_IFLAG] = 1,
};

struct field {
	uint8_t kind;     /* enum fkind */
	uint8_t opt;      /* optional tail: absent when the bytes end (0 then);
			   * an absent optional field ends the message */
	uint8_t cond;     /* FK_BOOL: fields that follow only when it is set */
	uint8_t unit;     /* FK_BLOB: the length is a multiple of it */
	uint16_t off;     /* offsetof the member */
	uint16_t off2;    /* FK_BLOB: its length member; FK_LEN: the struct */
	uint32_t min, max; /* FK_U32 with err: the range; FK_BLOB: max bytes */
	int err;          /* code of a value out of its range / over max */
};

#define FIELDS_MAX 11 /* per request or reply (SETATTR's request has 10) */
_Static_assert(sizeof(struct meta_rpc_req) <= UINT16_MAX && sizeof(struct meta_rpc_resp) <= UINT16_MAX,
	       "field offsets are u16");

struct msg {
	uint16_t type;
	uint8_t mutation; /* changes state: carries a tracked request id */
	const char *name;
	struct field req[FIELDS_MAX];  /* after the common header */
	struct field resp[FIELDS_MAX];
	/* Rules across fields, after the fields and ranges (may be NULL). */
	void (*req_check)(struct wire_reader *r, struct meta_rpc_req *m);
	void (*resp_check)(struct wire_reader *r, struct meta_rpc_resp *m);
};

/* Request fields (Q*) and reply fields (A*), by member name. */
#define F_(S, k, mem) .kind = FK_##k, .off = offsetof(S, mem)
#define REQ_ struct meta_rpc_req
#define RESP_ struct meta_rpc_resp
#define Q(k, mem) { F_(REQ_, k, mem) }
#define A(k, mem) { F_(RESP_, k, mem) }
#define QOPT(k, mem) { F_(REQ_, k, mem), .opt = 1 }
#define AOPT(k, mem) { F_(RESP_, k, mem), .opt = 1 }
/* u32 whose value outside [LO, HI] is ERR (checked after the last field) */
#define QRANGE(mem, lo, hi, e) { F_(REQ_, U32, mem), .min = (lo), .max = (hi), .err = (e) }
/* blob MEM (length MEM_len) of at most LIM bytes (else E), a multiple of UNIT */
#define QBLOB(mem, lim, e, u) \
	{ F_(REQ_, BLOB, mem), .off2 = offsetof(REQ_, mem##_len), .max = (lim), .err = (e), .unit = (u) }
#define ABLOB(mem, lim, u) \
	{ F_(RESP_, BLOB, mem), .off2 = offsetof(RESP_, mem##_len), .max = (lim), \
	  .err = -CFS_EPROTO, .unit = (u) }
#define QLEN { F_(REQ_, LEN, has_len), .off2 = offsetof(REQ_, len) }
/* flag MEM; the next N fields travel only when it is set */
#define AIF(mem, n) { F_(RESP_, BOOL, mem), .cond = (n) }
#define AOPTIF(mem, n) { F_(RESP_, BOOL, mem), .cond = (n), .opt = 1 }

/* A lock request's fields (the client is the header's), in both directions. */
#define LOCK_FIELDS(X) X(U64, lock.owner), X(U32, lock.pid), X(U8, lock.kind), \
	X(U8, lock.type), X(U64, lock.start), X(U64, lock.end)
/* After an inode reply's other fields: fields added later, so optional. */
#define INODE_TAIL AOPT(RDEV, inode), AOPT(IFLAG, inode)
/* Replies whose inode tail may carry inline bytes: after INODE_TAIL. */
#define IDATA_TAIL AOPTIF(has_idata, 3), A(U64, idata_ver), A(U32, idata_flags), \
	ABLOB(idata, META_IDATA_MAX, 1)
#define INODE_REPLY { A(INODE, inode), INODE_TAIL }
/* Last of every mutation's request: the client's lowest seq awaiting a
 * reply (meta.h "Bound"); old clients omit it (0: unknown). Fields added
 * to a mutation later go after it. */
#define IDEM_TAIL QOPT(U64, idem_low)

#define MSG(t, nm, mut) .type = (t), .name = (nm), .mutation = (mut)
#define MUT 1
#define RO 0 /* reads only: seq 0, untracked */

_Static_assert(META_RPC_IDATA_COMMIT == META_RPC_IDATA_BEGIN + 1, "IDATA_CONVERT's step range");

static void lock_req_check(struct wire_reader *r, struct meta_rpc_req *m);
static void lock_release_check(struct wire_reader *r, struct meta_rpc_req *m);
static void lock_resp_check(struct wire_reader *r, struct meta_rpc_resp *m);

#define PLUS_DATA_MAX (1u << 22) /* the server stops well before (META_PLUS_REPLY_MAX) */

/* Every message, in type order. */
static const struct msg msgs[] = {
	{ MSG(META_RPC_INFO, "INFO", RO),
	  .resp = { A(U64, instance_id), A(U32, threads), AOPT(U32, info_flags) } },
	{ MSG(META_RPC_LOOKUP, "LOOKUP", RO),
	  .req = { Q(U64, ino), Q(NAME, name) }, .resp = INODE_REPLY },
	{ MSG(META_RPC_GETATTR, "GETATTR", RO),
	  .req = { Q(U64, ino) }, .resp = INODE_REPLY },
	{ MSG(META_RPC_SETATTR, "SETATTR", MUT),
	  .req = { Q(U64, ino), Q(U32, sa.valid), Q(U32, sa.mode), Q(U32, sa.uid), Q(U32, sa.gid),
		   Q(U64, sa.size), Q(I64, sa.atime), Q(I64, sa.mtime), Q(I64, sa.ctime), IDEM_TAIL },
	  .resp = INODE_REPLY },
	{ MSG(META_RPC_CREATE, "CREATE", MUT),
	  .req = { Q(U64, ino), Q(NAME, name), Q(U32, mode), Q(U32, flags), IDEM_TAIL },
	  .resp = { A(INODE, inode), A(U64, session), INODE_TAIL, IDATA_TAIL } },
	{ MSG(META_RPC_OPEN, "OPEN", MUT),
	  .req = { Q(U64, ino), Q(U32, flags), IDEM_TAIL },
	  .resp = { A(INODE, inode), A(U64, session), INODE_TAIL, IDATA_TAIL } },
	{ MSG(META_RPC_CLOSE, "CLOSE", MUT),
	  /* flags came later: a request without them is an old client's */
	  .req = { Q(U64, ino), Q(U64, ino2), QLEN, QOPT(U32, flags), IDEM_TAIL } },
	{ MSG(META_RPC_MKDIR, "MKDIR", MUT),
	  .req = { Q(U64, ino), Q(NAME, name), Q(U32, mode), IDEM_TAIL }, .resp = INODE_REPLY },
	{ MSG(META_RPC_RMDIR, "RMDIR", MUT),
	  .req = { Q(U64, ino), Q(NAME, name), IDEM_TAIL } },
	{ MSG(META_RPC_UNLINK, "UNLINK", MUT),
	  .req = { Q(U64, ino), Q(NAME, name), IDEM_TAIL } },
	{ MSG(META_RPC_RENAME, "RENAME", MUT),
	  .req = { Q(U64, ino), Q(NAME, name), Q(U64, ino2), Q(NAME, name2), Q(U32, flags), IDEM_TAIL } },
	{ MSG(META_RPC_LINK, "LINK", MUT),
	  .req = { Q(U64, ino), Q(U64, ino2), Q(NAME, name), IDEM_TAIL }, .resp = INODE_REPLY },
	{ MSG(META_RPC_SYMLINK, "SYMLINK", MUT),
	  .req = { Q(U64, ino), Q(NAME, name), QBLOB(data, META_SYMLINK_MAX, -ENAMETOOLONG, 1),
		   IDEM_TAIL },
	  .resp = INODE_REPLY },
	{ MSG(META_RPC_READLINK, "READLINK", RO),
	  .req = { Q(U64, ino) }, .resp = { ABLOB(data, META_SYMLINK_MAX, 1) } },
	{ MSG(META_RPC_READDIR, "READDIR", RO),
	  .req = { Q(U64, ino), Q(NAME, name), QRANGE(count, 1, META_RPC_READDIR_MAX, -EINVAL) },
	  .resp = { A(DIRENTS, ents) } },
	{ MSG(META_RPC_GETXATTR, "GETXATTR", RO),
	  .req = { Q(U64, ino), Q(NAME, name), Q(U32, count) },
	  .resp = { A(U64, size), ABLOB(data, META_XATTR_VALUE_MAX, 1) } },
	{ MSG(META_RPC_SETXATTR, "SETXATTR", MUT),
	  .req = { Q(U64, ino), Q(NAME, name), QBLOB(data, META_XATTR_VALUE_MAX, -E2BIG, 1),
		   Q(U32, flags), IDEM_TAIL } },
	{ MSG(META_RPC_LISTXATTR, "LISTXATTR", RO),
	  .req = { Q(U64, ino), Q(U32, count) },
	  .resp = { A(U64, size), ABLOB(data, META_RPC_LIST_MAX, 1) } },
	{ MSG(META_RPC_REMOVEXATTR, "REMOVEXATTR", MUT),
	  .req = { Q(U64, ino), Q(NAME, name), IDEM_TAIL } },
	{ MSG(META_RPC_STATFS, "STATFS", RO),
	  .resp = { A(U64, statfs.total_bytes), A(U64, statfs.free_bytes),
		    A(U64, statfs.ids_allocated) } },
	{ MSG(META_RPC_SYNC, "SYNC", RO),
	  .req = { Q(U64, ino), QLEN, Q(BOOL, query) }, .resp = { A(U64, size) } },
	{ MSG(META_RPC_LAYOUT_GET, "LAYOUT_GET", RO),
	  .req = { Q(U64, ino) }, .resp = { AIF(has_layout, 1), A(LAYOUT, layout) } },
	{ MSG(META_RPC_LAYOUT_SET, "LAYOUT_SET", MUT),
	  .req = { Q(U64, ino), Q(U32, chunk_size), Q(U32, stripe), Q(U32, table_id), IDEM_TAIL } },
	{ MSG(META_RPC_ACCESS, "ACCESS", RO),
	  .req = { Q(U64, ino), Q(U32, flags) } },
	{ MSG(META_RPC_MKNOD, "MKNOD", MUT),
	  .req = { Q(U64, ino), Q(NAME, name), Q(U32, mode), Q(U64, rdev), IDEM_TAIL },
	  .resp = INODE_REPLY },
	{ MSG(META_RPC_CLOSE_MANY, "CLOSE_MANY", MUT),
	  .req = { QBLOB(data, 16 * META_CLOSE_MANY_MAX, -EINVAL, 16), IDEM_TAIL } },
	{ MSG(META_RPC_DIRLIST, "DIRLIST", RO),
	  .req = { Q(U64, ino), Q(NAME, name), QRANGE(count, 1, META_RPC_READDIR_MAX, -EINVAL) },
	  .resp = { A(U64, dir_ver), A(DIRENTS, ents) } },
	{ MSG(META_RPC_LOCK_SET, "LOCK_SET", RO),
	  .req = { Q(U64, ino), LOCK_FIELDS(Q) }, .req_check = lock_req_check },
	{ MSG(META_RPC_LOCK_GET, "LOCK_GET", RO),
	  .req = { Q(U64, ino), LOCK_FIELDS(Q) }, .req_check = lock_req_check,
	  .resp = { AIF(has_lock, 7), A(U64, lock.client), LOCK_FIELDS(A) },
	  .resp_check = lock_resp_check },
	{ MSG(META_RPC_LOCK_RELEASE, "LOCK_RELEASE", RO),
	  .req = { Q(U64, ino), Q(U64, lock.owner), Q(U32, flags) },
	  .req_check = lock_release_check },
	{ MSG(META_RPC_LOOKUP_PLUSD, "LOOKUP_PLUSD", RO),
	  .req = { Q(U64, ino), Q(NAME, name), QRANGE(count, 1, META_PLUS_MAX, -EINVAL) },
	  .resp = { A(PLUSD, data) } },
	{ MSG(META_RPC_FSYNC, "FSYNC", RO),
	  .req = { Q(U64, ino), QLEN, Q(BOOL, query) }, .resp = { A(U64, size) } },
	{ MSG(META_RPC_DIRVER, "DIRVER", RO),
	  .req = { QBLOB(data, 8 * META_RPC_DIRVER_MAX, -EINVAL, 8) },
	  .resp = { ABLOB(data, 8 * META_RPC_DIRVER_MAX, 8) } },
	{ MSG(META_RPC_IDATA_WRITE, "IDATA_WRITE", MUT),
	  .req = { Q(U64, ino), Q(U64, off), QBLOB(data, META_IDATA_MAX, -CFS_ENOTINLINE, 1), IDEM_TAIL },
	  .resp = INODE_REPLY },
	{ MSG(META_RPC_IDATA_READ, "IDATA_READ", RO),
	  .req = { Q(U64, ino) }, .resp = { A(INODE, inode), INODE_TAIL, IDATA_TAIL } },
	{ MSG(META_RPC_IDATA_CONVERT, "IDATA_CONVERT", MUT),
	  .req = { Q(U64, ino), QRANGE(count, META_RPC_IDATA_BEGIN, META_RPC_IDATA_COMMIT, -EINVAL),
		   Q(U32, flags), Q(U64, ver), IDEM_TAIL },
	  .resp = { A(INODE, inode), INODE_TAIL, IDATA_TAIL } },
	{ MSG(META_RPC_CREATE_DIR, "CREATE_DIR", MUT),
	  .req = { Q(U64, ino), Q(NAME, name), Q(U32, mode), Q(U32, flags), IDEM_TAIL },
	  .resp = { A(INODE, inode), A(U64, session), A(INODE, dir), INODE_TAIL } },
	{ MSG(META_RPC_UNLINK_DIR, "UNLINK_DIR", MUT),
	  .req = { Q(U64, ino), Q(NAME, name), IDEM_TAIL }, .resp = { A(INODE, dir) } },
	{ MSG(META_RPC_LOOKUP_PLUS, "LOOKUP_PLUS", RO),
	  .req = { Q(U64, ino), Q(NAME, name), QRANGE(count, 1, META_PLUS_MAX, -EINVAL) },
	  .resp = { A(PLUS, data) } },
	{ MSG(META_RPC_GC_KICK, "GC_KICK", RO) },
};

static const struct msg *find(uint16_t type)
{
	size_t lo = 0, hi = sizeof(msgs) / sizeof(msgs[0]);
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (msgs[mid].type == type)
			return &msgs[mid];
		if (msgs[mid].type < type)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const char *meta_rpc_name(uint16_t type)
{
	const struct msg *d = find(type);
	return d ? d->name : NULL;
}

int meta_rpc_is_mutation(uint16_t type)
{
	const struct msg *d = find(type);
	return d ? d->mutation : 0;
}

/* ---- records ---- */

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

static int put_fields(struct wire_writer *w, const struct field *f, const void *m);
static int get_fields(struct wire_reader *r, const struct field *f, void *m);

#define LAYOUT_F(k, mem) { F_(struct meta_layout, k, mem) }
/* A layout: these fields, then nchains (<= META_MAX_STRIPE) chain ids. */
static const struct field layout_fields[] = {
	LAYOUT_F(U32, chunk_size), LAYOUT_F(U32, stripe), LAYOUT_F(U32, table_id),
	LAYOUT_F(U64, seed), { .kind = FK_END },
};

static void put_layout(struct wire_writer *w, const struct meta_layout *l)
{
	uint32_t n = l->nchains <= META_MAX_STRIPE ? l->nchains : META_MAX_STRIPE;
	put_fields(w, layout_fields, l);
	wire_put_u32(w, n);
	for (uint32_t i = 0; i < n; i++)
		wire_put_u32(w, l->chains[i]);
}

static void get_layout(struct wire_reader *r, struct meta_layout *l)
{
	get_fields(r, layout_fields, l);
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

#define INODE_F(k, mem) { F_(struct meta_inode, k, mem) }
/* An inode: these fields, u8 has_layout, the layout when set, then the
 * symlink target as a blob (empty unless a symlink). Its rdev and inline
 * flag travel in the reply's tail (INODE_TAIL), after the other fields. */
static const struct field inode_fields[] = {
	INODE_F(U64, ino), INODE_F(U8, type), INODE_F(U32, mode), INODE_F(U32, uid),
	INODE_F(U32, gid), INODE_F(U32, nlink), INODE_F(U64, size), INODE_F(I64, atime),
	INODE_F(I64, mtime), INODE_F(I64, ctime), INODE_F(U64, truncate_ver),
	INODE_F(U32, chains_used), INODE_F(U64, parent), { .kind = FK_END },
};

static void put_inode(struct wire_writer *w, const struct meta_inode *in)
{
	uint32_t tl = in->type == META_T_SYMLINK && in->target_len <= META_SYMLINK_MAX
			      ? in->target_len : 0;
	put_fields(w, inode_fields, in);
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
	get_fields(r, inode_fields, in);
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
	in->rdev = 0; /* from the reply's tail (FK_RDEV) */
}

/* Decodes an inode into IN, or checks and drops it when IN is NULL. */
static int get_inode_or_skip(struct wire_reader *r, struct meta_inode *in)
{
	if (in) {
		get_inode(r, in);
		return 0;
	}
	in = malloc(sizeof(*in));
	if (!in)
		return -ENOMEM;
	get_inode(r, in);
	free(in);
	return 0;
}

#define DIRENT_MIN_WIRE 13 /* u64 ino, u8 type, u32 name length */

static void put_dirents(struct wire_writer *w, const struct meta_rpc_resp *m)
{
	wire_put_u8(w, m->eof ? 1 : 0);
	wire_put_u32(w, (uint32_t)m->n);
	for (int i = 0; i < m->n; i++) {
		wire_put_u64(w, m->ents[i].ino);
		wire_put_u8(w, m->ents[i].type);
		wire_put_blob(w, m->ents[i].name, m->ents[i].name_len);
	}
}

static void get_dirents(struct wire_reader *r, struct meta_rpc_resp *m)
{
	uint8_t eof = 0;
	uint32_t cnt = 0;
	wire_get_u8(r, &eof);
	wire_get_u32(r, &cnt);
	if (r->err)
		return;
	if (eof > 1 || cnt > META_RPC_READDIR_MAX || cnt > wire_left(r) / DIRENT_MIN_WIRE ||
	    (cnt && (!m->ents || (int)cnt > m->ents_cap))) {
		wire_fail(r, -CFS_EPROTO);
		return;
	}
	m->eof = eof;
	for (uint32_t i = 0; i < cnt && !r->err; i++) {
		struct meta_dirent *e = &m->ents[i];
		const uint8_t *np;
		uint32_t nl;
		wire_get_u64(r, &e->ino);
		wire_get_u8(r, &e->type);
		get_limited(r, META_NAME_MAX, -CFS_EPROTO, &np, &nl);
		if (r->err)
			break;
		memcpy(e->name, np, nl);
		e->name[nl] = 0;
		e->name_len = (uint8_t)nl;
	}
	m->n = r->err ? 0 : (int)cnt;
}

static int plus_check(const uint8_t *p, size_t n, uint32_t cnt, int with_bytes);

static void get_plus(struct wire_reader *r, struct meta_rpc_resp *m, int with_bytes)
{
	uint8_t eof = 0;
	uint32_t cnt = 0;
	wire_get_u8(r, &eof);
	wire_get_u32(r, &cnt);
	get_limited(r, PLUS_DATA_MAX, -CFS_EPROTO, &m->data, &m->data_len);
	if (!r->err && (eof > 1 || cnt > META_PLUS_MAX))
		wire_fail(r, -CFS_EPROTO);
	if (!r->err && plus_check(m->data, m->data_len, cnt, with_bytes))
		wire_fail(r, -CFS_EPROTO);
	m->eof = eof;
	m->n = r->err ? 0 : (int)cnt;
}

/* ---- the interpreter ---- */

#define AT(m, off, T) ((T)((char *)(m) + (off)))
#define CAT(m, off, T) ((T)((const char *)(m) + (off)))

/* Appends the fields F (up to FK_END) of M: 0, -EINVAL (a record pointer
 * that must be set is NULL) or -ENOMEM. */
static int put_fields(struct wire_writer *w, const struct field *f, const void *m)
{
	for (; f->kind != FK_END; f++) {
		const void *p = CAT(m, f->off, const void *);
		const void *obj = NULL;
		if (f->kind == FK_INODE || f->kind == FK_LAYOUT || f->kind == FK_RDEV ||
		    f->kind == FK_IFLAG) {
			obj = *(const void *const *)p;
			if (!obj)
				return -EINVAL;
		}
		switch (f->kind) {
		case FK_U8: wire_put_u8(w, *(const uint8_t *)p); break;
		case FK_U32: wire_put_u32(w, *(const uint32_t *)p); break;
		case FK_U64: wire_put_u64(w, *(const uint64_t *)p); break;
		case FK_I64: wire_put_i64(w, *(const int64_t *)p); break;
		case FK_BOOL:
			wire_put_u8(w, *(const int *)p ? 1 : 0);
			if (!*(const int *)p)
				f += f->cond;
			break;
		case FK_NAME: {
			const struct meta_name *n = p;
			wire_put_blob(w, n->p, (uint32_t)n->n);
			break;
		}
		case FK_BLOB:
			wire_put_blob(w, *(const uint8_t *const *)p, *CAT(m, f->off2, const uint32_t *));
			break;
		case FK_LEN: put_len(w, *(const int *)p, CAT(m, f->off2, const struct meta_length *)); break;
		case FK_INODE: put_inode(w, obj); break;
		case FK_LAYOUT: put_layout(w, obj); break;
		case FK_RDEV: wire_put_u64(w, ((const struct meta_inode *)obj)->rdev); break;
		case FK_IFLAG: wire_put_u8(w, ((const struct meta_inode *)obj)->idata ? 1 : 0); break;
		case FK_DIRENTS: put_dirents(w, m); break;
		case FK_PLUS:
		case FK_PLUSD: {
			const struct meta_rpc_resp *a = m;
			wire_put_u8(w, a->eof ? 1 : 0);
			wire_put_u32(w, (uint32_t)a->n);
			wire_put_blob(w, a->data, a->data_len);
			break;
		}
		}
	}
	return w->err;
}

/* Reads the fields F (up to FK_END) into M; errors latch in R. Returns 0,
 * or -ENOMEM (no scratch record to check a dropped inode in). */
static int get_fields(struct wire_reader *r, const struct field *f0, void *m)
{
	const struct field *f;
	for (f = f0; f->kind != FK_END; f++) {
		void *p = AT(m, f->off, void *);
		if (f->opt && (r->err || wire_left(r) < fk_min[f->kind]))
			break; /* an absent optional field ends the message */
		switch (f->kind) {
		case FK_U8: wire_get_u8(r, p); break;
		case FK_U32: wire_get_u32(r, p); break;
		case FK_U64: wire_get_u64(r, p); break;
		case FK_I64: wire_get_i64(r, p); break;
		case FK_BOOL: {
			uint8_t v = 0;
			wire_get_u8(r, &v);
			if (!r->err && v > 1)
				wire_fail(r, -CFS_EPROTO);
			*(int *)p = v;
			if (!v)
				f += f->cond;
			break;
		}
		case FK_NAME: {
			struct meta_name *n = p;
			const uint8_t *np;
			uint32_t len;
			get_limited(r, META_NAME_MAX, -ENAMETOOLONG, &np, &len);
			n->p = (const char *)np;
			n->n = len;
			break;
		}
		case FK_BLOB: {
			uint32_t *len = AT(m, f->off2, uint32_t *);
			get_limited(r, f->max, f->err, p, len);
			if (!r->err && *len % f->unit)
				wire_fail(r, -CFS_EPROTO);
			break;
		}
		case FK_LEN: get_len(r, p, AT(m, f->off2, struct meta_length *)); break;
		case FK_INODE:
			if (get_inode_or_skip(r, *(struct meta_inode **)p))
				return -ENOMEM;
			break;
		case FK_LAYOUT: {
			struct meta_layout *l = *(struct meta_layout **)p, tmp;
			get_layout(r, l ? l : &tmp);
			break;
		}
		case FK_RDEV: {
			struct meta_inode *in = *(struct meta_inode **)p;
			uint64_t v = 0;
			wire_get_u64(r, &v);
			if (in)
				in->rdev = v;
			break;
		}
		case FK_IFLAG: {
			struct meta_inode *in = *(struct meta_inode **)p;
			uint8_t v = 0;
			wire_get_u8(r, &v);
			if (!r->err && v > 1)
				wire_fail(r, -CFS_EPROTO);
			if (in)
				in->idata = v;
			break;
		}
		case FK_DIRENTS: get_dirents(r, m); break;
		case FK_PLUS: get_plus(r, m, 0); break;
		case FK_PLUSD: get_plus(r, m, 1); break;
		}
	}
	/* Ranges last: a truncated message is -CFS_EPROTO whatever its values. */
	for (const struct field *g = f0; g < f && !r->err; g++) {
		uint32_t v;
		if (g->kind != FK_U32 || !g->err)
			continue;
		v = *AT(m, g->off, uint32_t *);
		if (v < g->min || v > g->max)
			wire_fail(r, g->err);
	}
	return 0;
}

/* ---- rules across fields ---- */

static void lock_req_check(struct wire_reader *r, struct meta_rpc_req *m)
{
	m->lock.client = m->client;
	if (!r->err && meta_lock_check(&m->lock))
		wire_fail(r, -EINVAL);
}

static void lock_release_check(struct wire_reader *r, struct meta_rpc_req *m)
{
	m->lock.client = m->client;
}

/* A reported conflict is a real lock. */
static void lock_resp_check(struct wire_reader *r, struct meta_rpc_resp *m)
{
	if (m->has_lock && !r->err && (meta_lock_check(&m->lock) || m->lock.type == META_LOCK_UN))
		wire_fail(r, -CFS_EPROTO);
}

/* ---- requests ---- */

int meta_rpc_req_encode(struct buf *b, const struct meta_rpc_req *m)
{
	const struct msg *d = find(m->type);
	struct wire_writer w;
	if (!d)
		return -EINVAL;
	wire_writer_init(&w, b);
	wire_put_u32(&w, m->uid);
	wire_put_u32(&w, m->gid);
	wire_put_u32(&w, m->ngroups);
	for (uint32_t i = 0; i < m->ngroups && i < META_RPC_GROUPS_MAX; i++)
		wire_put_u32(&w, m->groups[i]);
	wire_put_u64(&w, m->client);
	wire_put_u64(&w, m->seq);
	return put_fields(&w, d->req, m);
}

int meta_rpc_req_decode(uint16_t type, const void *p, size_t n, struct meta_rpc_req *m)
{
	const struct msg *d = find(type);
	struct wire_reader r;
	memset(m, 0, sizeof(*m));
	m->type = type;
	if (!d)
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
	get_fields(&r, d->req, m); /* no inode in a request: never -ENOMEM */
	/* A watermark above the request's own seq (or on an untracked one)
	 * would let meta drop a record the client still waits for. */
	if (!r.err && m->idem_low > m->seq)
		wire_fail(&r, -CFS_EPROTO);
	if (d->req_check)
		d->req_check(&r, m);
	return r.err;
}

/* ---- replies ---- */

/* All of M but the caller's type and memory zeroed, as a decoder leaves it
 * to fill. */
static void resp_reset(struct meta_rpc_resp *m)
{
	struct meta_rpc_resp keep = *m;
	memset(m, 0, sizeof(*m));
	m->type = keep.type, m->inode = keep.inode, m->dir = keep.dir, m->layout = keep.layout;
	m->ents = keep.ents, m->ents_cap = keep.ents_cap;
}

int meta_rpc_resp_encode(struct buf *b, const struct meta_rpc_resp *m)
{
	const struct msg *d = find(m->type);
	struct wire_writer w;
	if (!d)
		return -EINVAL;
	wire_writer_init(&w, b);
	return put_fields(&w, d->resp, m);
}

int meta_rpc_resp_decode(const void *p, size_t n, struct meta_rpc_resp *m)
{
	const struct msg *d = find(m->type);
	struct wire_reader r;

	resp_reset(m);
	if (!d)
		return -CFS_EPROTO;
	wire_reader_init(&r, p, n);
	if (get_fields(&r, d->resp, m))
		return -ENOMEM;
	if (d->resp_check)
		d->resp_check(&r, m);
	return r.err;
}

/* ---- copies without the bytes (meta_proto.h "Direct calls") ----
 *
 * Each copy walks the same row as the codecs and gives, field by field,
 * what the decoder reads back from what the encoder writes: values the
 * encoder normalises (a flag as 0/1, a length record without has_len,
 * a clamped chain count, a target only for symlinks) are normalised the
 * same way, and every check the decoder makes on well-formed bytes (name
 * and blob bounds, ranges, the request's watermark, the lock rules, the
 * inode type) is made on the value. tests/meta/test_meta_proto.c
 * compares the two on every named type. */

static const uint8_t empty_bytes[1]; /* a present empty blob: the decoder's pointer is non-NULL */

/* The flag F of SRC at P to Q as 0/1; returns the field the copy goes on
 * after (past the fields that travel only when it is set). */
static const struct field *copy_bool(const struct field *f, void *q, const void *p)
{
	*(int *)q = *(const int *)p ? 1 : 0;
	return *(int *)q ? f : f + f->cond;
}

/* The scalar member of kind K at P to Q. */
static void copy_scalar(uint8_t k, void *q, const void *p)
{
	switch (k) {
	case FK_U8: *(uint8_t *)q = *(const uint8_t *)p; break;
	case FK_U32: *(uint32_t *)q = *(const uint32_t *)p; break;
	case FK_U64: *(uint64_t *)q = *(const uint64_t *)p; break;
	case FK_I64: *(int64_t *)q = *(const int64_t *)p; break;
	}
}

/* Copies the scalar fields F (FK_U8..FK_I64 only) of SRC to DST. */
static void copy_scalars(const struct field *f, void *dst, const void *src)
{
	for (; f->kind != FK_END; f++)
		copy_scalar(f->kind, AT(dst, f->off, void *), CAT(src, f->off, const void *));
}

static void copy_layout(struct meta_layout *d, const struct meta_layout *s)
{
	uint32_t n = s->nchains <= META_MAX_STRIPE ? s->nchains : META_MAX_STRIPE;
	copy_scalars(layout_fields, d, s);
	d->nchains = n;
	memcpy(d->chains, s->chains, n * sizeof(d->chains[0]));
}

/* get_inode(put_inode(S)) into D (NULL: only checked): 0 or -CFS_EPROTO. */
static int copy_inode(struct meta_inode *d, const struct meta_inode *s)
{
	if (s->type < META_T_FILE || s->type > META_T_MAX)
		return -CFS_EPROTO;
	if (!d)
		return 0;
	uint32_t tl = s->type == META_T_SYMLINK && s->target_len <= META_SYMLINK_MAX
			      ? s->target_len : 0;
	memset(d, 0, offsetof(struct meta_inode, layout));
	copy_scalars(inode_fields, d, s);
	d->has_layout = s->has_layout ? 1 : 0;
	if (d->has_layout)
		copy_layout(&d->layout, &s->layout);
	else
		d->layout.nchains = 0;
	memcpy(d->target, s->target, tl);
	d->target[tl] = 0;
	d->target_len = tl;
	d->rdev = 0;
	return 0;
}

int meta_rpc_req_copy(struct meta_rpc_req *dst, const struct meta_rpc_req *src)
{
	const struct msg *d = find(src->type);
	const struct field *f;
	int err = 0;
	memset(dst, 0, sizeof(*dst));
	dst->type = src->type;
	if (!d)
		return -CFS_EPROTO;
	if (src->ngroups > META_RPC_GROUPS_MAX)
		return -EINVAL;
	dst->uid = src->uid;
	dst->gid = src->gid;
	dst->ngroups = src->ngroups;
	memcpy(dst->groups, src->groups, src->ngroups * sizeof(src->groups[0]));
	dst->client = src->client;
	dst->seq = src->seq;
	for (f = d->req; f->kind != FK_END; f++) {
		void *q = AT(dst, f->off, void *);
		const void *p = CAT(src, f->off, const void *);
		switch (f->kind) {
		case FK_BOOL: f = copy_bool(f, q, p); break;
		case FK_NAME: {
			const struct meta_name *n = p;
			if (n->n > META_NAME_MAX) {
				err = err ? err : -ENAMETOOLONG;
				break;
			}
			*(struct meta_name *)q = (struct meta_name){ n->n ? n->p : (const char *)empty_bytes,
								   n->n };
			break;
		}
		case FK_BLOB: {
			const uint8_t *b = *(const uint8_t *const *)p;
			uint32_t len = *CAT(src, f->off2, const uint32_t *);
			if (len > f->max || len % f->unit) {
				err = err ? err : len > f->max ? f->err : -CFS_EPROTO;
				break;
			}
			*(const uint8_t **)q = len ? b : empty_bytes;
			*AT(dst, f->off2, uint32_t *) = len;
			break;
		}
		case FK_LEN: {
			const struct meta_length *l = CAT(src, f->off2, const struct meta_length *);
			int has = *(const int *)p ? 1 : 0;
			*(int *)q = has;
			if (has)
				*AT(dst, f->off2, struct meta_length *) = *l;
			break;
		}
		default: copy_scalar(f->kind, q, p); break;
		}
	}
	for (const struct field *g = d->req; g < f && !err; g++) {
		uint32_t v;
		if (g->kind != FK_U32 || !g->err)
			continue;
		v = *AT(dst, g->off, uint32_t *);
		if (v < g->min || v > g->max)
			err = g->err;
	}
	if (!err && dst->idem_low > dst->seq)
		err = -CFS_EPROTO;
	if (d->req_check) {
		struct wire_reader r = { NULL, NULL, err };
		d->req_check(&r, dst);
		err = r.err;
	}
	return err;
}

int meta_rpc_resp_copyable(uint16_t type)
{
	const struct msg *d = find(type);
	if (!d)
		return 0;
	for (const struct field *f = d->resp; f->kind != FK_END; f++)
		if (f->kind == FK_NAME || f->kind == FK_BLOB || f->kind == FK_LEN ||
		    f->kind == FK_DIRENTS || f->kind == FK_PLUS || f->kind == FK_PLUSD)
			return 0;
	return 1;
}

int meta_rpc_resp_copy(struct meta_rpc_resp *dst, const struct meta_rpc_resp *src)
{
	const struct msg *d = find(dst->type);
	const struct field *f;
	int err = 0;

	if (!d || !meta_rpc_resp_copyable(dst->type))
		return -EINVAL;
	/* what the encoder refuses first: a record pointer NULL */
	for (f = d->resp; f->kind != FK_END; f++) {
		const void *p = CAT(src, f->off, const void *);
		if ((f->kind == FK_INODE || f->kind == FK_LAYOUT || f->kind == FK_RDEV ||
		     f->kind == FK_IFLAG) && !*(const void *const *)p)
			return -EINVAL;
		if (f->kind == FK_BOOL && !*(const int *)p)
			f += f->cond;
	}
	resp_reset(dst);
	for (f = d->resp; f->kind != FK_END && !err; f++) {
		void *q = AT(dst, f->off, void *);
		const void *p = CAT(src, f->off, const void *);
		switch (f->kind) {
		case FK_BOOL: f = copy_bool(f, q, p); break;
		case FK_INODE:
			err = copy_inode(*(struct meta_inode **)q, *(const struct meta_inode *const *)p);
			break;
		case FK_LAYOUT: {
			struct meta_layout *l = *(struct meta_layout **)q;
			if (l)
				copy_layout(l, *(const struct meta_layout *const *)p);
			break;
		}
		case FK_RDEV: {
			struct meta_inode *in = *(struct meta_inode **)q;
			if (in)
				in->rdev = (*(const struct meta_inode *const *)p)->rdev;
			break;
		}
		case FK_IFLAG: {
			struct meta_inode *in = *(struct meta_inode **)q;
			if (in)
				in->idata = (*(const struct meta_inode *const *)p)->idata ? 1 : 0;
			break;
		}
		default: copy_scalar(f->kind, q, p); break;
		}
	}
	if (d->resp_check) {
		struct wire_reader r = { NULL, NULL, err };
		d->resp_check(&r, dst);
		err = r.err;
	}
	return err;
}

/* ---- LOOKUP_PLUS entries: a name blob, an inode, its tail (rdev, inline flag) ---- */

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

int meta_rpc_plusd_put(struct buf *b, const struct meta_dirent *de, const struct meta_inode *in,
		       const uint8_t *bytes, uint32_t len)
{
	int rc = meta_rpc_plus_put(b, de, in);
	if (rc)
		return rc;
	struct wire_writer w;
	wire_writer_init(&w, b);
	wire_put_u8(&w, bytes ? 1 : 0);
	if (bytes)
		wire_put_blob(&w, bytes, len);
	return w.err;
}

int meta_rpc_plusd_next(const uint8_t **p, size_t *n, struct meta_dirent *de,
			struct meta_inode *in, const uint8_t **bytes, uint32_t *len)
{
	const uint8_t *q = *p;
	size_t left = *n;
	*bytes = NULL;
	*len = 0;
	if (meta_rpc_plus_next(&q, &left, de, in))
		return -CFS_EPROTO;
	struct wire_reader r;
	uint8_t has = 0;
	const uint8_t *bp = NULL;
	uint32_t bl = 0;
	wire_reader_init(&r, q, left);
	wire_get_u8(&r, &has);
	if (!r.err && has > 1)
		wire_fail(&r, -CFS_EPROTO);
	if (!r.err && has) {
		get_limited(&r, META_IDATA_MAX, -CFS_EPROTO, &bp, &bl);
		if (!r.err && (!in->idata || in->type != META_T_FILE || bl != in->size))
			wire_fail(&r, -CFS_EPROTO);
	}
	if (r.err)
		return -CFS_EPROTO;
	if (has) {
		*bytes = bp ? bp : r.p; /* an empty file's bytes: a non-NULL empty span */
		*len = bl;
	}
	*n = left - (size_t)(r.p - q);
	*p = r.p;
	return 0;
}

/* 0 when P..P+N holds exactly CNT well-formed entries (WITH_BYTES:
 * LOOKUP_PLUSD's). */
static int plus_check(const uint8_t *p, size_t n, uint32_t cnt, int with_bytes)
{
	struct meta_inode *in = malloc(sizeof(*in));
	struct meta_dirent de;
	int rc = in ? 0 : -ENOMEM;
	const uint8_t *bytes;
	uint32_t len;
	for (uint32_t i = 0; i < cnt && !rc; i++)
		rc = with_bytes ? meta_rpc_plusd_next(&p, &n, &de, in, &bytes, &len)
		                : meta_rpc_plus_next(&p, &n, &de, in);
	free(in);
	return rc ? rc : n ? -CFS_EPROTO : 0;
}
