/* schema.h - the metadata service's keys and records in the KV store.
 *
 * Key table (every prefix is 4 ASCII bytes; integers in keys are
 * big-endian so that numeric order is byte order and one inode's or one
 * directory's keys form one contiguous range):
 *
 *   prefix  key                                       value
 *   INOD    "INOD" ino(8)                             inode record
 *   DENT    "DENT" parent(8) name(1..255)             dentry record
 *   XATR    "XATR" ino(8) name(1..255)                xattr record
 *   SESS    "SESS" ino(8) client(8) session(8)        session record (write opens)
 *   GCQU    "GCQU" ino(8)                             gc record (unlinked inode
 *                                                     waiting for chunk removal)
 *   IDEM    "IDEM" client(8) seq(8)                   idempotency record
 *   IDAL    "IDAL"                                    id allocator record
 *   DSTA    "DSTA" dir(8) kind(1) shard(1)            directory counter (below)
 *   IDAT    "IDAT" ino(8)                             inline data of a small file
 *                                                     (meta_idata.c; absent: empty)
 *
 * Directory counters are what entry operations change in their parent
 * without writing its inode record (so creates in one directory do not
 * conflict): kind 'L' holds the number of subdirectories as an offset to
 * the record's nlink (kv_atomic_add: mkdir +1, rmdir -1, a directory
 * renamed between parents -1 / +1), kind 'T' the time of the last entry
 * change (kv_atomic_max of the wall clock in ns), which the directory's
 * mtime and ctime report when it is later than the record's, kind 'V' the
 * number of entry changes ever made in it (kv_atomic_add +1 per call of
 * meta_dir_changed; mounts compare it to learn that names they cache may
 * be stale: META_RPC_DIRVER). Values are
 * raw 8-byte little-endian integers (the KV atomic ops' format, no header
 * or CRC); an absent key is 0. They go away with the directory. A counter
 * may be split over shards 0..META_DSTA_SHARDS-1 (its value is the sum,
 * or the max, over them): on etcd, where an atomic op compares the key's
 * revision, each write picks a shard at random so that concurrent entry
 * changes in one directory rarely touch the same key; lmdb and mem add no
 * conflict for atomic ops and always use shard 0.
 *
 * Records. Every value starts with an 8-byte header and ends with a
 * CRC32C (Castagnoli) of all bytes before it; integers are little-endian:
 *
 *   OFFSET SIZE  FIELD
 *   0      4     magic ("CFSI" inode, "CFSD" dentry, "CFSX" xattr,
 *                "CFSS" session, "CFSG" gc, "CFSR" idempotency, "CFSA" ids,
 *                "CFSN" inline data)
 *   4      2     version (1). A newer version only appends fields before
 *                the CRC; decoders read what they know and skip the rest.
 *   6      2     kind-specific (inode: type u8 + flags u8; others 0)
 *   8      ...   body (below)
 *   n-4    4     crc32c(bytes [0, n-4))
 *
 * Inode flags: bit 0 has a layout, bit 1 inline data (files only: the
 * bytes live in the IDAT record, whose length is the size; the layout is
 * kept for when the file grows past the threshold).
 * Inode body: ino u64, mode u32 (07777 bits), uid u32, gid u32, nlink u32,
 * size u64, atime i64, mtime i64, ctime i64 (ns since the epoch),
 * truncate_ver u64, chains_used u32, parent u64 (directories; 0 otherwise),
 * then if flags bit 0: layout = chunk_size u32, stripe u32, table_id u32,
 * seed u64, nchains u32, chains u32[nchains]; then for symlinks a u32
 * length and the target bytes; then for special files (types 4..7,
 * added later: older records never hold them) rdev u64 (Linux dev_t).
 * Dentry body: ino u64, type u8 (enum meta_type), 3 zero bytes.
 * Xattr body: u32 length, value bytes.
 * Session body: client u64, session u64, opened i64.
 * Gc body: ino u64, enqueued i64, claim_owner u64, claim_until i64.
 * Idempotency body: op u32, result i32, ino u64, aux u64, written i64.
 * Id allocator body: next u64.
 * Inline data body: ver u64 (bumped by every change of the bytes), conv_owner
 * u64 (client converting it to chunks; 0: none), conv_until i64 (that
 * claim's lease end, wall ns), flags u32 (bit 0: a conversion was started
 * once, so chunk 0 may hold stale bytes), then a u32 length and the bytes.
 *
 * Decoders never trust the bytes: a short record, bad CRC, unknown magic,
 * type or out-of-range field returns -CFS_ECORRUPT. Thread-safe (no state).
 */
#ifndef CFS_META_SCHEMA_H
#define CFS_META_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define META_NAME_MAX 255            /* bytes per name (dentry, xattr) */
#define META_SYMLINK_MAX 4095        /* bytes per symlink target */
#define META_XATTR_VALUE_MAX 65536   /* bytes per xattr value (Linux XATTR_SIZE_MAX) */
#define META_MAX_STRIPE 256          /* chains per file layout */
#define META_KEY_MAX (4 + 8 + 8 + 8 + META_NAME_MAX + 1)

#define META_ROOT_INO 1ULL           /* the root directory */
#define META_FIRST_INO 16ULL         /* first id the allocator hands out */

/* Special files (FIFO, devices, sockets) are nodes only: the kernel serves
 * them once it sees the type; they have no layout and no data. */
enum meta_type {
	META_T_FILE = 1, META_T_DIR = 2, META_T_SYMLINK = 3,
	META_T_FIFO = 4, META_T_CHR = 5, META_T_BLK = 6, META_T_SOCK = 7,
};
#define META_T_MAX META_T_SOCK
/* 1 for the node-only types (FIFO, CHR, BLK, SOCK). */
static inline int meta_type_special(uint8_t t)
{
	return t >= META_T_FIFO && t <= META_T_SOCK;
}

/* A file's placement; directories keep a default (nchains == 0). */
struct meta_layout {
	uint32_t chunk_size;    /* bytes per chunk: power of two, 64 KiB..64 MiB */
	uint32_t stripe;        /* chains the file spreads over, >= 1 */
	uint32_t table_id;      /* chain table the chains come from */
	uint64_t seed;          /* shuffle seed (layout.h) */
	uint32_t nchains;       /* == stripe for files, 0 for a directory default */
	uint32_t chains[META_MAX_STRIPE]; /* chain ids */
};

/* Decoded inode; also what attribute calls return. */
struct meta_inode {
	uint64_t ino;
	uint8_t type;           /* enum meta_type */
	uint32_t mode;          /* permission bits incl. suid/sgid/sticky (07777) */
	uint32_t uid, gid;
	uint32_t nlink;         /* dentries naming it (directories: 2, root too) */
	uint64_t size;          /* files: length; symlinks: target length */
	int64_t atime, mtime, ctime; /* ns since the epoch */
	uint64_t truncate_ver;  /* bumped whenever the length shrinks */
	uint32_t chains_used;   /* files: stripe slots that may hold chunks */
	uint64_t parent;        /* directories: parent ino (root: itself) */
	int has_layout;         /* files always; directories with a default */
	int idata;              /* files: the data is inline (IDAT record), not in chunks */
	struct meta_layout layout;
	uint32_t target_len;    /* symlinks */
	char target[META_SYMLINK_MAX + 1]; /* NUL-terminated symlink target */
	uint64_t rdev;          /* special files: device number (Linux dev_t); else 0 */
};

struct meta_dentry {
	uint64_t ino;
	uint8_t type;
};

struct meta_session_rec {
	uint64_t client, session;
	int64_t opened;
};

struct meta_gc_rec {
	uint64_t ino;
	int64_t enqueued;
	uint64_t claim_owner;   /* 0: unclaimed */
	int64_t claim_until;    /* claim lease end (wall ns) */
};

struct meta_idem_rec {
	uint32_t op;
	int32_t result;
	uint64_t ino, aux;
	int64_t written;
};

struct meta_key {
	uint8_t b[META_KEY_MAX];
	uint32_t n;
};

/* Key builders (no failure: callers validated name lengths). */
void meta_key_inode(struct meta_key *k, uint64_t ino);
void meta_key_dentry(struct meta_key *k, uint64_t parent, const void *name, size_t n);
/* [begin, end) covering every dentry of directory DIR. */
void meta_key_dir_range(struct meta_key *b, struct meta_key *e, uint64_t dir);
void meta_key_xattr(struct meta_key *k, uint64_t ino, const void *name, size_t n);
void meta_key_xattr_range(struct meta_key *b, struct meta_key *e, uint64_t ino);
void meta_key_session(struct meta_key *k, uint64_t ino, uint64_t client, uint64_t session);
void meta_key_session_range(struct meta_key *b, struct meta_key *e, uint64_t ino);
void meta_key_gc(struct meta_key *k, uint64_t ino);
void meta_key_idem(struct meta_key *k, uint64_t client, uint64_t seq);
void meta_key_idalloc(struct meta_key *k);
void meta_key_idata(struct meta_key *k, uint64_t ino);
enum meta_dirstat_kind { META_DSTA_LINKS = 'L', META_DSTA_TIME = 'T', META_DSTA_VERSION = 'V' };
#define META_DSTA_SHARDS 16
void meta_key_dirstat(struct meta_key *k, uint64_t dir, enum meta_dirstat_kind kind,
		      uint8_t shard);
/* [begin, end) covering every counter of directory DIR. */
void meta_key_dirstat_range(struct meta_key *b, struct meta_key *e, uint64_t dir);
/* [begin, end) covering every shard of DIR's counter KIND. */
void meta_key_dirstat_kind_range(struct meta_key *b, struct meta_key *e, uint64_t dir,
				 enum meta_dirstat_kind kind);
/* [begin, end) covering every key with a 4-byte prefix, e.g. "INOD". */
void meta_key_prefix_range(struct meta_key *b, struct meta_key *e, const char prefix[4]);

/* Copies the part of SRC that the inode's value is made of, as
 * meta_inode_decode fills it: the fields before the layout, the layout with
 * its first nchains chains (has_layout; else nchains 0), a symlink's target
 * up to its NUL, rdev. The rest of DST (chains past nchains, target bytes
 * past the NUL: a struct meta_inode is 5 KiB, its value ~100 bytes for
 * most inodes) is left as it was. Thread-safe. */
void meta_inode_copy(struct meta_inode *dst, const struct meta_inode *src);

/* Encoders replace B's contents; 0 or -ENOMEM. Decoders: 0 or -CFS_ECORRUPT. */
int meta_inode_encode(const struct meta_inode *in, struct buf *b);
int meta_inode_decode(const void *p, size_t n, struct meta_inode *out);
int meta_dentry_encode(const struct meta_dentry *d, struct buf *b);
int meta_dentry_decode(const void *p, size_t n, struct meta_dentry *out);
int meta_xattr_encode(const void *val, size_t len, struct buf *b);
/* *val points into P (borrowed). */
int meta_xattr_decode(const void *p, size_t n, const uint8_t **val, uint32_t *len);
int meta_session_encode(const struct meta_session_rec *s, struct buf *b);
int meta_session_decode(const void *p, size_t n, struct meta_session_rec *out);
int meta_gc_encode(const struct meta_gc_rec *g, struct buf *b);
int meta_gc_decode(const void *p, size_t n, struct meta_gc_rec *out);
int meta_idem_encode(const struct meta_idem_rec *r, struct buf *b);
int meta_idem_decode(const void *p, size_t n, struct meta_idem_rec *out);
int meta_idalloc_encode(uint64_t next, struct buf *b);
int meta_idalloc_decode(const void *p, size_t n, uint64_t *next);

#define META_IDATA_MAX 65536         /* bytes of inline data a file may hold, at most */
#define META_IDATA_F_ATTEMPTED 1     /* a conversion to chunks was started */
#define META_IDATA_F_PLACED 2        /* chunk 0's placeholder may be written */
/* Chunk 0 may exist: GC removes chunks, an EMPTY commit is refused. */
#define META_IDATA_F_CHUNK0 (META_IDATA_F_ATTEMPTED | META_IDATA_F_PLACED)
/* The IDAT record (data borrowed: points into the record for decode, the
 * caller's bytes for encode). */
struct meta_idata_rec {
	uint64_t ver;
	uint64_t conv_owner;
	int64_t conv_until;
	uint32_t flags;
	const uint8_t *data;
	uint32_t len;            /* <= META_IDATA_MAX */
};
int meta_idata_encode(const struct meta_idata_rec *r, struct buf *b);
int meta_idata_decode(const void *p, size_t n, struct meta_idata_rec *out);

#endif
