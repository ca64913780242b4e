/* meta_proto.h - codecs of the metadata-service messages (types 200..224).
 *
 * The one-line layouts are in the catalog in net/rpc_proto.h. Every request
 * starts with the same header: the caller's credentials and the client
 * request id (client, seq) that makes mutations idempotent (seq 0 for
 * reads). Requests of all types decode into one struct meta_rpc_req and
 * replies into one struct meta_rpc_resp; which fields a type uses, in wire
 * order, is its row in the message table of meta_proto.c (the one place
 * a message is declared; how to add one is at the top of that file), and
 * in the catalog. One codec for the family keeps the field rules (name
 * bounds, group count, value sizes) in one place.
 *
 * Decoders read N bytes at P, skip unknown trailing bytes, and return 0 or
 * a negative code: -CFS_EPROTO for a truncated or malformed payload (the
 * server answers it as a protocol error), and for a well-formed payload
 * whose field is over its POSIX limit the POSIX error the operation would
 * give (-ENAMETOOLONG: a name over META_NAME_MAX bytes or a symlink target
 * over META_SYMLINK_MAX; -E2BIG: an xattr value over META_XATTR_VALUE_MAX;
 * -EINVAL: more than META_RPC_GROUPS_MAX groups or a readdir count out of
 * range), which the server answers as a normal error. Pointers a decoder
 * stores borrow from P. Encoders append to a struct buf and return 0,
 * -ENOMEM, or -EINVAL (a type without a table row, appending nothing; a
 * reply's inode / dir / layout pointer NULL where the type returns one);
 * they do not validate values (the server does). Thread-safe.
 */
#ifndef CFS_META_META_PROTO_H
#define CFS_META_META_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "meta/meta.h"
#include "meta/meta_lock.h"

#define META_RPC_GROUPS_MAX 256     /* supplementary groups per request */
#define META_RPC_READDIR_MAX 1024   /* entries per readdir reply */
#define META_RPC_LIST_MAX (1u << 20) /* bytes of a listxattr reply */

/* Message types; the numbers are the catalog's (net/rpc_proto.h). */
enum meta_rpc_type {
	META_RPC_INFO = 200,
	META_RPC_LOOKUP = 201,
	META_RPC_GETATTR = 202,
	META_RPC_SETATTR = 203,
	META_RPC_CREATE = 204,
	META_RPC_OPEN = 205,
	META_RPC_CLOSE = 206,
	META_RPC_MKDIR = 207,
	META_RPC_RMDIR = 208,
	META_RPC_UNLINK = 209,
	META_RPC_RENAME = 210,
	META_RPC_LINK = 211,
	META_RPC_SYMLINK = 212,
	META_RPC_READLINK = 213,
	META_RPC_READDIR = 214,
	META_RPC_GETXATTR = 215,
	META_RPC_SETXATTR = 216,
	META_RPC_LISTXATTR = 217,
	META_RPC_REMOVEXATTR = 218,
	META_RPC_STATFS = 219,
	META_RPC_SYNC = 220,
	META_RPC_LAYOUT_GET = 221,
	META_RPC_LAYOUT_SET = 222,
	META_RPC_ACCESS = 223,
	META_RPC_MKNOD = 224,
};
#define META_RPC_FIRST META_RPC_INFO
#define META_RPC_LAST META_RPC_MKNOD

/* Block 225..229 (create/close path through the mount). CLOSE_MANY
 * (meta_close_many): ends write sessions whose lengths meta already has,
 * in one txn; data is 1..META_CLOSE_MANY_MAX pairs of little-endian u64
 * (ino, session). Reply: nothing. An old meta answers "bad type" (the
 * client then sends one CLOSE each).
 * DIRLIST (meta_dir_list): READDIR's request and reply, the reply led by
 * the directory's entry-change count (dir_ver, as DIRVER reports it) read
 * in the same snapshot as the entries: a mount that has every page with
 * one count knows the directory's whole name list as of that count. An
 * old meta answers "bad type". */
enum meta_rpc_type_225 {
	META_RPC_CLOSE_MANY = 225,
	META_RPC_DIRLIST = 226,
};
#define META_RPC_FIRST_225 META_RPC_CLOSE_MANY
#define META_RPC_LAST_225 META_RPC_DIRLIST

/* File locks (meta_lock.h), a range of their own. */
enum meta_rpc_lock_type {
	META_RPC_LOCK_SET = 230,     /* set or clear one lock; -EAGAIN on a conflict */
	META_RPC_LOCK_GET = 231,     /* F_GETLK */
	META_RPC_LOCK_RELEASE = 232, /* drop a holder's locks on an inode */
};
#define META_RPC_LOCK_FIRST META_RPC_LOCK_SET
#define META_RPC_LOCK_LAST META_RPC_LOCK_RELEASE
/* LOCK_RELEASE flags: kind bits (META_LOCK_KIND_BIT) plus this one. */
#define META_RPC_LOCK_ANY_OWNER (1u << 31)

/* Block 233..239 (small-file reads through the mount). LOOKUP_PLUSD:
 * LOOKUP_PLUS whose entries each end with u8 has and, when set, a blob of
 * the inline file's bytes (exactly its size): meta_lookup_plus_idata.
 * Walk them with meta_rpc_plusd_next. An old meta answers "bad type". */
enum meta_rpc_type_233 {
	META_RPC_LOOKUP_PLUSD = 233,
};
#define META_RPC_FIRST_233 META_RPC_LOOKUP_PLUSD
#define META_RPC_LAST_233 META_RPC_LOOKUP_PLUSD

/* Block 240..249 (metadata speed). FSYNC: as SYNC (len, query), then
 * every metadata change committed so far is made durable (kv_flush)
 * before the reply; fsync(2) and fsyncdir through the mount send it. */
enum meta_rpc_type_240 {
	META_RPC_FSYNC = 240,
};
#define META_RPC_LAST_240 META_RPC_FSYNC

/* Block 242..249 (mount caches). DIRVER: the entry-change counts of up to
 * META_RPC_DIRVER_MAX directories (meta_dir_versions); the request's data
 * and the reply's data are arrays of little-endian u64 (inode ids in,
 * counts out, in the same order). */
enum meta_rpc_type_242 {
	META_RPC_DIRVER = 242,
};
#define META_RPC_DIRVER_MAX 1024

/* Block 260..264 (inline data, meta_idata.c; catalog in net/rpc_proto.h).
 * IDATA_WRITE: data at off (reply: the inode). IDATA_READ: the inode and,
 * when it is inline, its bytes. IDATA_CONVERT: count is the step
 * (META_RPC_IDATA_BEGIN: claim and return the bytes; META_RPC_IDATA_COMMIT:
 * flip to chunks if ver still matches; flags META_IDATA_COMMIT_*). */
enum meta_rpc_type_260 {
	META_RPC_IDATA_WRITE = 260,
	META_RPC_IDATA_READ = 261,
	META_RPC_IDATA_CONVERT = 262,
};
#define META_RPC_IDATA_FIRST META_RPC_IDATA_WRITE
#define META_RPC_IDATA_LAST META_RPC_IDATA_CONVERT
enum meta_rpc_idata_step { META_RPC_IDATA_BEGIN = 1, META_RPC_IDATA_COMMIT = 2 };
/* Block 265..269 (entry changes through the mount). CREATE_DIR and
 * UNLINK_DIR take CREATE's and UNLINK's requests; their replies add the
 * parent directory's attributes, read (as GETATTR) right after the change
 * committed. The kernel drops a directory's cached attributes at every
 * entry change it makes and asks for them again at the next permission
 * check; the mount answers that GETATTR from this copy instead of a
 * second round trip (fuse_fs.c "Directory attributes"). Replies:
 * CREATE_DIR inode, u64 session, dir inode; UNLINK_DIR dir inode. An old
 * meta answers "bad type" (the client then uses CREATE / UNLINK). */
enum meta_rpc_type_265 {
	META_RPC_CREATE_DIR = 265,
	META_RPC_UNLINK_DIR = 266,
};
#define META_RPC_FIRST_265 META_RPC_CREATE_DIR
#define META_RPC_LAST_265 META_RPC_UNLINK_DIR

/* Block 267..279 (stat / create / delete path through the mount).
 * LOOKUP_PLUS (meta_lookup_plus): a lookup-ahead. Request as READDIR
 * (ino: the directory, name: the first name wanted, included; count:
 * 1..META_PLUS_MAX). Reply: u8 eof, u32 n, then n entries, each a name
 * blob, an inode and its tail (u64 rdev, u8 inline flag); resp.data /
 * data_len borrow the entries (the decoder checks them all), which
 * meta_rpc_plus_next walks. An old meta answers "bad type". */
enum meta_rpc_type_267 {
	META_RPC_LOOKUP_PLUS = 267,
};
#define META_PLUS_REPLY_MAX (256u << 10) /* bytes of entries a LOOKUP_PLUS reply stops at */
#define META_RPC_FIRST_267 META_RPC_LOOKUP_PLUS
#define META_RPC_LAST_267 META_RPC_LOOKUP_PLUS

/* Block 290..295 (the in-process meta of a mount, meta_local.h). GC_KICK:
 * "a change that may have queued a file for GC committed": the meta
 * service wakes its GC as after its own unlink (meta_service.c gc_kick).
 * A mount that runs unlinks in its own process sends it after each, at
 * most one in flight (meta_client.c "GC kicks"). Request: the header only.
 * Reply: empty, when the GC pass that covers the kick starts (so a mount
 * kicks about once per pass). An old meta answers "bad type" (the client stops kicking;
 * the service's background pass still finds the files). */
enum meta_rpc_type_290 {
	META_RPC_GC_KICK = 290,
};
#define META_RPC_FIRST_290 META_RPC_GC_KICK
#define META_RPC_LAST_290 META_RPC_GC_KICK

/* CLOSE flags (the request's trailing u32; absent: 0). */
enum meta_close_flags {
	/* The client's length report covers everything it wrote through
	 * this session: no storage query, one txn (meta_close_known). */
	META_CLOSE_LEN_KNOWN = 1 << 0,
};

/* "LOOKUP", ... for a meta type; NULL for any other type. */
const char *meta_rpc_name(uint16_t type);
/* 1 when TYPE changes state and so carries a tracked request id. */
int meta_rpc_is_mutation(uint16_t type);

/* A decoded (or to-be-encoded) request. Field use per type:
 *   ino     ino, parent, dir, or rename's source parent
 *   ino2    rename: destination parent; link: new parent; close: session
 *   name    the entry name, xattr name or readdir cursor
 *   name2   rename: destination name
 *   mode    create, mkdir; mknod: file type bits (S_IFMT) | permissions
 *   rdev    mknod: device number
 *   flags   create/open (META_O_*), close (META_CLOSE_*), rename (META_RENAME_*), setxattr
 *           (META_XATTR_*), access (mask)
 *   count   readdir: max entries; getxattr/listxattr: buffer capacity
 *   data    symlink target, xattr value; dirver: u64 inode ids (LE);
 *           close_many: u64 (ino, session) pairs (LE)
 *   len     close, sync, fsync (has_len: len present); query: sync, fsync
 *   sa      setattr
 *   layout  layout_set: chunk_size, stripe, table_id
 *   lock    lock_set, lock_get: owner, pid, kind, type, start, end (the
 *           client is the header's); lock_release: owner, with flags the
 *           kinds and META_RPC_LOCK_ANY_OWNER
 *   off     idata_write: offset (data: the bytes, <= META_IDATA_MAX)
 *   ver     idata_convert commit: the version begin returned */
struct meta_rpc_req {
	uint16_t type;
	uint32_t uid, gid;
	uint32_t ngroups;                      /* <= META_RPC_GROUPS_MAX */
	uint32_t groups[META_RPC_GROUPS_MAX];
	uint64_t client, seq;                  /* request id; seq 0: untracked */
	uint64_t idem_low;                     /* mutations: lowest seq awaiting a reply (<= seq; 0: unknown) */
	uint64_t ino, ino2;
	struct meta_name name, name2;          /* borrowed */
	uint32_t mode, flags, count;
	uint64_t rdev;
	const uint8_t *data;                   /* borrowed */
	uint32_t data_len;
	int has_len;
	struct meta_length len;
	int query;
	struct meta_setattr sa;
	uint32_t chunk_size, stripe, table_id;
	struct meta_lock lock;
	uint64_t off, ver;
};

/* INFO's flags (meta_rpc_resp.info_flags). META_INFO_F_NO_WRITES: its KV
 * refuses writes (kv_write_error: a sync of the store failed), so every
 * mutation gets EIO. */
#define META_INFO_F_NO_WRITES 1u

/* A decoded reply of a successful call. Field use per type:
 *   inode     lookup, getattr, setattr, create, open, mkdir, link,
 *             symlink, mknod: points to caller memory the decoder fills
 *             (its rdev travels after the type's other fields, so
 *             replies of older servers decode with rdev 0)
 *   session   create, open
 *   size      sync: the length; getxattr, listxattr: the full size
 *   data      readlink target, xattr value, xattr name list, dirver's u64
 *             counts (borrowed)
 *   ents      readdir, dirlist: caller array of ents_cap entries; n, eof
 *   dir_ver   dirlist: the directory's entry-change count
 *   data, n, eof  lookup_plus: the encoded entries (meta_rpc_plus_next)
 *   statfs    statfs
 *   layout    layout_get (has_layout) into caller memory
 *   instance_id, threads, info_flags   info
 *   has_lock, lock  lock_get: the conflicting lock (has_lock 0: none)
 *   has_idata, idata*  open, create, idata_read, idata_convert (begin):
 *             the inline bytes (borrowed), their version and META_IDATA_F_*
 *             flags; they travel after rdev in the inode tail together with
 *             the inode's inline flag, so older peers ignore them */
struct meta_rpc_resp {
	uint16_t type;
	struct meta_inode *inode;
	uint64_t session;
	uint64_t size;
	const uint8_t *data;
	uint32_t data_len;
	struct meta_dirent *ents;
	int ents_cap, n, eof;
	struct meta_statfs statfs;
	int has_layout;
	struct meta_layout *layout;
	uint64_t instance_id;
	uint32_t threads;
	uint32_t info_flags; /* info: META_INFO_F_*; absent (older meta): 0 */
	int has_lock;
	struct meta_lock lock;
	int has_idata;
	uint64_t idata_ver;
	uint32_t idata_flags;
	const uint8_t *idata;
	uint32_t idata_len;
	struct meta_inode *dir; /* CREATE_DIR, UNLINK_DIR: the parent's attributes */
	uint64_t dir_ver;
};

int meta_rpc_req_encode(struct buf *b, const struct meta_rpc_req *m);
/* TYPE is the frame's message type; M is zeroed first. */
int meta_rpc_req_decode(uint16_t type, const void *p, size_t n, struct meta_rpc_req *m);
int meta_rpc_resp_encode(struct buf *b, const struct meta_rpc_resp *m);
/* The caller sets m->type, and m->inode / m->ents (+ ents_cap) /
 * m->layout / m->dir where the type returns them (NULL: the decoder skips the
 * field's content but still checks it). Other fields are overwritten. */
int meta_rpc_resp_decode(const void *p, size_t n, struct meta_rpc_resp *m);

/* Direct calls: a caller in the process of the meta instance it calls
 * (meta_local.h "Direct calls") hands over and takes back the structs,
 * and these copies stand for the codec on the way. meta_rpc_req_copy
 * gives DST what meta_rpc_req_decode(SRC->type, the bytes
 * meta_rpc_req_encode(SRC) writes) gives and returns its code, for a SRC
 * the encoder takes whole (ngroups <= META_RPC_GROUPS_MAX, otherwise
 * -EINVAL; names and blobs in memory, under 4 GiB); DST's pointers borrow
 * SRC's memory instead of the bytes. meta_rpc_resp_copyable: 1 when
 * TYPE's reply borrows nothing from its bytes (no name, blob or entries:
 * its inodes and layout go to caller memory), which meta_rpc_resp_copy
 * takes. meta_rpc_resp_copy gives DST (type and caller memory set as for
 * meta_rpc_resp_decode) what decoding SRC's encoding gives, and returns
 * the encoder's code (-EINVAL: a record pointer NULL, DST untouched) or
 * else the decoder's (-CFS_EPROTO: an inode of no known type); -EINVAL
 * for a type not copyable. tests/meta/test_meta_proto.c checks both
 * against the codecs on random messages of every type. Thread-safe. */
int meta_rpc_req_copy(struct meta_rpc_req *dst, const struct meta_rpc_req *src);
int meta_rpc_resp_copyable(uint16_t type);
int meta_rpc_resp_copy(struct meta_rpc_resp *dst, const struct meta_rpc_resp *src);

/* LOOKUP_PLUS entries. put appends one entry (name DE, inode IN) to B:
 * 0 or -ENOMEM. next decodes the entry at *P (N bytes left) into DE and
 * IN and advances both: 0, or -CFS_EPROTO (bad entry). */
int meta_rpc_plus_put(struct buf *b, const struct meta_dirent *de, const struct meta_inode *in);
int meta_rpc_plus_next(const uint8_t **p, size_t *n, struct meta_dirent *de,
		       struct meta_inode *in);
/* LOOKUP_PLUSD entries: as above, then the inline bytes (BYTES NULL: none).
 * next sets *BYTES (borrowed from *P, NULL: none) and *LEN; a blob whose
 * length is not the inode's size, or bytes of a file that is not inline,
 * is -CFS_EPROTO. */
int meta_rpc_plusd_put(struct buf *b, const struct meta_dirent *de, const struct meta_inode *in,
		       const uint8_t *bytes, uint32_t len);
int meta_rpc_plusd_next(const uint8_t **p, size_t *n, struct meta_dirent *de,
			struct meta_inode *in, const uint8_t **bytes, uint32_t *len);

#endif
