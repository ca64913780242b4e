/* rpc_proto.h - the ChainFS RPC protocol: changelog and message catalog.
 *
 * PROTOCOL CHANGELOG (major.minor, negotiated in HELLO/CHALLENGE)
 *   1.0  frame header v1 (frame.h), handshake HELLO/CHALLENGE/AUTH/AUTH_OK
 *        with HMAC-SHA256 mutual proof, error payload, ECHO.
 *        Later additions old peers ignore: META_CLOSE's trailing u32 flags
 *        (absent = 0); every meta mutation's trailing u64 idem_low, after
 *        its other fields (the client's lowest seq awaiting a reply,
 *        <= seq; absent = 0: meta keeps the client's records to the TTL); META_FSYNC (240; an old meta answers "bad type");
 *        the inline-data tail of inode replies (u8 inline after rdev; OPEN,
 *        CREATE, IDATA_* also u8 has [u64 ver, u32 flags, blob data]) and
 *        META_IDATA_* (260..262; an old meta answers "bad type", and never
 *        makes inline files, so a new mount just never sees one);
 *        MGMTD_REGISTER's trailing u64 incarnation (absent = 0: every try is a
 *        new node, as before); META_INFO's trailing u32 flags (absent = 0).
 *   1.0+ STATS (17), answered by every server's RPC layer: a peer that does
 *        not know it answers -CFS_EBADMSG_TYPE (no minor bump needed).
 * Rules: a new field is appended to a message and bumps the minor; decoders
 * skip unknown trailing bytes, so old peers ignore it. A peer never infers a
 * version from a message length. A change older peers cannot ignore bumps
 * the major; peers with different majors refuse each other at HELLO.
 *
 * MESSAGE CATALOG (type: name, direction: payload layout; u8/u16/u32/u64 are
 * little-endian, blob = u32 length + bytes, n[32] = 32 raw bytes)
 *    1 HELLO      c->s: u16 major, u16 minor, u64 features, blob cluster_id(<=255), n[32] client_nonce
 *    2 CHALLENGE  s->c: u16 major, u16 minor, u64 features, n[32] server_nonce
 *    3 AUTH       c->s: n[32] proof = HMAC(secret, "chainfs-auth-c" cluster_id cnonce snonce)
 *    4 AUTH_OK    s->c: n[32] proof = HMAC(secret, "chainfs-auth-s" cluster_id cnonce snonce)
 *   16 ECHO       req:  u32 delay_ms, u32 flags(RPC_ECHO_F_*), blob data
 *                 resp: blob data, u64 bulk_len_received
 *   17 STATS      req:  -   (answered by the RPC layer of every server, after auth)
 *                 resp: u64 accepted, u64 auth_fail, u64 bad_input, u64 requests,
 *                       u64 handshake_timeout, [u64 accepted_local: since the
 *                       same-host socket; absent from older servers, read as 0]
 *                       (rpc.h struct rpc_stats)
 *   --- mgmtd (codecs in src/mgmtd/mgmtd_proto.{h,c}; tgt = u32 slot, u8 local state,
 *       u64 capacity, u64 used) ---
 *  100 MGMTD_REGISTER     req:  u8 node type, u32 node id (0: assign), blob addr, u32 n, n x tgt,
 *                               u64 incarnation (random per process; a retry gets the same id)
 *                         resp: u32 node id, u64 routing version
 *  101 MGMTD_HEARTBEAT    req:  u32 node id, u64 seq, u32 n, n x tgt
 *                         resp: u64 routing version
 *  102 MGMTD_GET_ROUTING  req:  u64 known version, u32 wait ms
 *                         resp: u64 version, u8 changed, blob routing info (routing.h; empty
 *                               unless changed)
 *  103 MGMTD_INIT_CLUSTER req:  u32 flags (0)
 *                         resp: u8 created (0: was already initialised)
 *  104 MGMTD_CREATE_TABLE req:  u32 replicas, u64 seed
 *                         resp: u32 table id, u32 chains, blob report (balance figures, text)
 *  105 MGMTD_SET_TARGET   req:  u32 target id, u8 admin offline (1) / online (0)
 *                         resp: u64 routing version
 *   A non-primary mgmtd answers every mgmtd request with -CFS_ENOT_PRIMARY
 *   and an ERROR payload whose text is the primary's "ip:port" (empty when
 *   it does not know one).
 *   --- meta (codecs in src/meta/meta_proto.{h,c}, enum meta_rpc_type there).
 *       Every request starts with hdr = u32 uid, u32 gid, u32 ngroups(<=256),
 *       ngroups x u32, u64 client id, u64 seq (mutations; 0 = untracked).
 *       Mutations end with [u64 idem_low] after the fields listed below.
 *       name = blob(<=255); inode = u64 ino, u8 type, u32 mode, u32 uid, u32 gid,
 *       u32 nlink, u64 size, i64 atime, i64 mtime, i64 ctime, u64 truncate_ver,
 *       u32 chains_used, u64 parent, u8 has_layout, [layout], blob target(<=4095);
 *       layout = u32 chunk_size, u32 stripe, u32 table, u64 seed, u32 n(<=256), n x u32;
 *       len = u8 present, u64 length, u64 truncate_ver. Errors: status -errno and
 *       an ERROR payload "OP: message". ---
 *  200 META_INFO        req: hdr                                  resp: u64 instance id, u32 workers,
 *                       [u32 flags: 1 = its store refuses writes after a failed sync]
 *  201 META_LOOKUP      req: hdr, u64 parent, name                resp: inode
 *  202 META_GETATTR     req: hdr, u64 ino                         resp: inode
 *  203 META_SETATTR     req: hdr, u64 ino, u32 valid, u32 mode, u32 uid, u32 gid, u64 size,
 *                            i64 atime, i64 mtime, i64 ctime      resp: inode
 *  204 META_CREATE      req: hdr, u64 parent, name, u32 mode, u32 flags  resp: inode, u64 session
 *  205 META_OPEN        req: hdr, u64 ino, u32 flags              resp: inode, u64 session
 *  206 META_CLOSE       req: hdr, u64 ino, u64 session, len, [u32 flags]  resp: -
 *  207 META_MKDIR       req: hdr, u64 parent, name, u32 mode      resp: inode
 *  208 META_RMDIR       req: hdr, u64 parent, name                resp: -
 *  209 META_UNLINK      req: hdr, u64 parent, name                resp: -
 *  210 META_RENAME      req: hdr, u64 sparent, name, u64 dparent, name, u32 flags  resp: -
 *  211 META_LINK        req: hdr, u64 ino, u64 parent, name       resp: inode
 *  212 META_SYMLINK     req: hdr, u64 parent, name, blob target(<=4095)  resp: inode
 *  213 META_READLINK    req: hdr, u64 ino                         resp: blob target
 *  214 META_READDIR     req: hdr, u64 dir, name cursor (may be empty), u32 max(1..1024)
 *                       resp: u8 eof, u32 n, n x (u64 ino, u8 type, name)
 *  215 META_GETXATTR    req: hdr, u64 ino, name, u32 cap          resp: u64 size, blob value
 *  216 META_SETXATTR    req: hdr, u64 ino, name, blob value(<=65536), u32 flags  resp: -
 *  217 META_LISTXATTR   req: hdr, u64 ino, u32 cap                resp: u64 size, blob names
 *  218 META_REMOVEXATTR req: hdr, u64 ino, name                   resp: -
 *  219 META_STATFS      req: hdr                                  resp: u64 total, u64 free, u64 ids
 *  220 META_SYNC        req: hdr, u64 ino, len, u8 query          resp: u64 size
 *  221 META_LAYOUT_GET  req: hdr, u64 ino                         resp: u8 has, [layout]
 *  222 META_LAYOUT_SET  req: hdr, u64 dir, u32 chunk_size, u32 stripe, u32 table  resp: -
 *  223 META_ACCESS      req: hdr, u64 ino, u32 mask               resp: -
 *  224 META_MKNOD       req: hdr, u64 parent, name, u32 mode (S_IFMT | perms), u64 rdev
 *                       resp: inode
 *   Replies that carry an inode end with u64 rdev (after every field above;
 *   absent from older servers: 0).
 *  225 META_CLOSE_MANY  req: hdr, blob (u64 ino, u64 session)[1..48]  resp: -
 *                       (ends write sessions whose lengths meta has, one txn;
 *                       meta_close_many. Old meta: "bad type".)
 *  226 META_DIRLIST     req: as READDIR  resp: u64 dir_ver (entry-change count,
 *                       same snapshot), then READDIR's (meta_dir_list)
 *  230 META_LOCK_SET    req: hdr, u64 ino, lock                   resp: - (-EAGAIN: conflict)
 *  231 META_LOCK_GET    req: hdr, u64 ino, lock                   resp: u8 has, [u64 client, lock]
 *  232 META_LOCK_RELEASE req: hdr, u64 ino, u64 owner, u32 kinds  resp: -
 *       lock = u64 owner, u32 pid, u8 kind (1 posix, 2 flock), u8 type (0 unlock,
 *       1 read, 2 write), u64 start, u64 end (inclusive; 2^64-1: to EOF); the holder's
 *       client is hdr's client id (meta/meta_lock.h).
 *  233 META_LOOKUP_PLUSD req: as LOOKUP_PLUS   resp: as LOOKUP_PLUS, each entry
 *                       followed by u8 has, [blob bytes (= the inode's size,
 *                       <= 65536)]: the bytes of inline files the caller may
 *                       read (meta_lookup_plus_idata; read-only opens of small
 *                       files answered by the mount; old meta: "bad type")
 *  240 META_FSYNC       req: hdr, u64 ino, len, u8 query          resp: u64 size
 *                       (as SYNC, then all committed metadata made durable)
 *  242 META_DIRVER      req: hdr, blob u64 dir ino[<=1024]       resp: blob u64 count[]
 *                       (entry-change counts of the directories; mounts poll it to
 *                       invalidate cached names: meta_dir_versions)
 *  260 META_IDATA_WRITE   req: hdr, u64 ino, u64 off, blob data(<=65536)  resp: inode
 *                       (-CFS_ENOTINLINE: not inline, or the end passes the threshold)
 *  261 META_IDATA_READ    req: hdr, u64 ino                     resp: inode (+ the bytes in
 *                       the tail when inline)
 *  262 META_IDATA_CONVERT req: hdr, u64 ino, u32 step (1 begin, 2 commit), u32 flags,
 *                       u64 ver      resp: inode (+ begin: the bytes and their version)
 *                       (meta/meta_idata.c: claim, copy to chunks, flip)
 *  265 META_CREATE_DIR  req: as CREATE                resp: inode, u64 session, dir inode
 *  266 META_UNLINK_DIR  req: as UNLINK                resp: dir inode
 *                       (dir inode: the parent's attributes read right after the
 *                       change committed; the mount answers the kernel's next
 *                       GETATTR of the parent from it. Old meta: "bad type".)
 *  267 META_LOOKUP_PLUS req: as READDIR (name: first name, included; count
 *                       <= 256)   resp: u8 eof, u32 n, blob entries (name blob,
 *                       inode, u64 rdev, u8 inline flag each)
 *                       (a lookup-ahead: the mount answers the next lookups in
 *                       the directory from it; meta_lookup_plus)
 *  290 META_GC_KICK     req: hdr   resp: empty  (a mount's in-process meta committed
 *                       an unlink or rename: wake GC now; answered when the GC
 *                       pass starts; meta_service.c gc_kick_handler)
 *  250..259 META_KVC_*  the KVCache index: NS_CREATE, NS_GET, NS_DELETE, LOOKUP,
 *                       RESERVE, PUBLISH, DELETE, CLEAR, RELEASE, STATS; one
 *                       batch layout both ways (meta/meta_kvc_proto.h)
 *   A meta instance also answers ECHO (16), the transport baseline of bench meta.
 *   Any reply with status != 0 may carry the ERROR payload: blob text(<=1024).
 *   --- storage (codecs in src/storage/storage_proto.{h,c}, enum sto_msg_type
 *       there). tgt = u32 target id, u32 chain id (0: direct), u32 chain version;
 *       eo = u64 client id, u64 channel, u64 seq (exactly-once key, seq 0 = none);
 *       flags STO_WF_* (1 replace, 2 forwarded by the predecessor, 4 resync,
 *       8 no flush: KVCache cache mode, 16 only if the chunk is absent (the
 *       head checks it under the chunk's lock: -EEXIST, not forwarded); unknown
 *       bits are ignored). ---
 *  300 STO_WRITE      req:  tgt, u64 ino, u32 idx, u32 off, u32 len, u32 crc32c(data),
 *                           u64 update_ver (0: head assigns), u32 flags, eo; bulk = data
 *                     resp: u64 commit_ver, u32 chunk len, u32 chunk crc32c
 *  301 STO_READ       req:  u32 flags (1 relaxed), u32 n(<=1024), n x (tgt, u64 ino, u32 idx,
 *                           u32 off, u32 len)
 *                     resp: u32 n, n x (i32 bytes or -err, u32 crc32c(bytes), u64 commit_ver);
 *                           bulk = the returned bytes of every range, in order
 *  302 STO_REMOVE     req:  tgt, u64 ino, u32 begin, u32 end, u32 flags, eo  resp: u32 removed
 *  303 STO_QUERY      req:  u32 target, u32 chain, u64 ino, u32 idx, u8 last
 *                     resp: u32 idx, u32 len, u32 crc, u32 chain_ver, u64 commit_ver,
 *                           u64 pending_ver
 *  304 STO_STAT       req:  u32 target  resp: u64 capacity, u64 used, u64 chunks, u64 corrupt_reads
 *  305 STO_DUMP       req:  u32 target, u32 chain, u64 from_ino, u32 from_idx, u32 max(1..4096)
 *                     resp: u8 more, u32 n, n x (u64 ino, u32 idx, u32 len, u32 crc,
 *                           u32 chain_ver, u64 commit_ver)
 *  306 STO_SYNC_DONE  req:  tgt  resp: -   (predecessor -> syncing target: now up to date)
 *  307 STO_WITNESS    req:  u32 asker node, u64 routing version
 *                     resp: u64 mgmtd contact age ms, u64 routing version, u32 promise ms
 *  310 STO_SHM_REG    req:  u64 size, u32 flags; a memfd passed with it (SCM_RIGHTS)
 *                     resp: u64 region id   (docs/rpc.md "Shared memory")
 *  311 STO_SHM_READ   req:  u64 region, u64 off, u64 cap, then a STO_READ request
 *                     resp: a STO_READ response; the bytes are at OFF of the region
 *  312 STO_SHM_WRITE  req:  u64 region, u64 off, u64 cap, then a STO_WRITE request (its
 *                           data: the first len bytes at OFF of the region, no bulk)
 *                     resp: a STO_WRITE response
 *  313 STO_SHM_UNREG  req:  u64 region   resp: -   (the region is unmapped once the
 *                           requests holding it are done; an old server answers
 *                           -CFS_EBADMSG_TYPE and keeps it until the connection closes)
 *  314 STO_SHM_READV  req:  u64 region, u32 n, n x u64 off, then a STO_READ request of n
 *                           ranges   resp: a STO_READ response; range i's bytes at off[i]
 *  315 STO_SC_MAP     req:  u64 region (the slot table), u32 target, u32 chain, u64 ino,
 *                           u32 idx
 *                     resp: u32 slot, u64 seq, u32 pid, u64 dev, u64 inode, u64 file_off,
 *                           u32 len, u64 commit_ver, u32 npages, npages x u32 page CRC,
 *                           blob path   (docs/rpc.md "Short-circuit reads")
 *  316 STO_SC_MAP_MANY req: u64 region, u32 n (<= 256; more: -E2BIG), n x (u32 target,
 *                           u32 chain, u64 ino, u32 idx)
 *                     resp: u32 n, n x (i32 result, blob: a STO_SC_MAP resp when result
 *                           is 0)   (an old server: -CFS_EBADMSG_TYPE; map one by one)
 *  317 STO_TRUNCATE   req:  tgt, u64 ino, u32 idx, u32 len (>= 1), u32 flags, eo
 *                     resp: as STO_WRITE's (the chunk after the cut); to the head only,
 *                           it goes down the chain as a replace STO_WRITE
 *  320 STO_WRITE_IF   req:  STO_WRITE's fields, then u64 expect (0: absent, all ones:
 *                           present); bulk = data; expect 0: update_ver != 0 is the
 *                           version the chunk is made at
 *                     resp: as STO_WRITE's; to the head only: a replace applied only
 *                           if the chunk's version is EXPECT (else -ESTALE, cached for
 *                           exactly-once), down the chain as a replace STO_WRITE
 *   The handshake messages are sent with request ids and replied to like any
 *   request; a refusal is a reply with status -CFS_EAUTH or -CFS_EVERSION.
 *
 * Type ranges, so services can append without colliding:
 *   1..15 handshake, 16..63 net test/bench, 100..199 mgmtd, 200..299 meta,
 *   300..399 storage, 400..499 kv.
 *
 * Codecs: *_encode appends to a struct buf and returns 0 or -ENOMEM.
 * *_decode reads N bytes at P and returns 0 or -CFS_EPROTO (truncated or over
 * a field limit); pointers it stores borrow from P. All are thread-safe.
 */
#ifndef CFS_NET_RPC_PROTO_H
#define CFS_NET_RPC_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define RPC_PROTO_MAJOR 1
#define RPC_PROTO_MINOR 0
#define RPC_NONCE_LEN 32
#define RPC_PROOF_LEN 32
#define RPC_CLUSTER_ID_MAX 255
#define RPC_ERROR_TEXT_MAX 1024

enum rpc_msg_type {
	RPC_MSG_HELLO = 1,
	RPC_MSG_CHALLENGE = 2,
	RPC_MSG_AUTH = 3,
	RPC_MSG_AUTH_OK = 4,
	RPC_MSG_ECHO = 16,
	RPC_MSG_STATS = 17,
	/* mgmtd */
	RPC_MSG_MGMTD_REGISTER = 100,
	RPC_MSG_MGMTD_HEARTBEAT = 101,
	RPC_MSG_MGMTD_GET_ROUTING = 102,
	RPC_MSG_MGMTD_INIT_CLUSTER = 103,
	RPC_MSG_MGMTD_CREATE_TABLE = 104,
	RPC_MSG_MGMTD_SET_TARGET = 105,
	/* meta: 200..223, enum meta_rpc_type in meta/meta_proto.h; locks 230..232,
	 * enum meta_rpc_lock_type there; inline data 260..262 */
	/* storage: 300..307, 310..312, enum sto_msg_type in storage/storage_proto.h */
};

/* Feature bits offered in HELLO and accepted in CHALLENGE (intersection). */
enum rpc_feature {
	RPC_FEAT_BULK_CRC = 1 << 0, /* peer verifies FRAME_F_BULK_CRC */
};
#define RPC_FEATURES_ALL ((uint64_t)RPC_FEAT_BULK_CRC)

struct rpc_hello {
	uint16_t major, minor;
	uint64_t features;
	const uint8_t *cluster_id; /* borrowed; not NUL-terminated */
	uint32_t cluster_id_len;
	uint8_t nonce[RPC_NONCE_LEN];
};

struct rpc_challenge {
	uint16_t major, minor;
	uint64_t features;
	uint8_t nonce[RPC_NONCE_LEN];
};

struct rpc_proof {
	uint8_t mac[RPC_PROOF_LEN];
};

struct rpc_error {
	const uint8_t *text; /* borrowed; not NUL-terminated */
	uint32_t text_len;
};

enum rpc_echo_flags {
	RPC_ECHO_F_BULK = 1 << 0, /* send the request bulk back as the reply bulk */
};

struct rpc_echo_req {
	uint32_t delay_ms; /* server waits this long before replying */
	uint32_t flags;    /* RPC_ECHO_F_* */
	const uint8_t *data;
	uint32_t data_len;
};

struct rpc_echo_resp {
	const uint8_t *data;
	uint32_t data_len;
	uint64_t bulk_len; /* bulk bytes the server received with the request */
};

/* Name of a message type for log lines ("HELLO", "type-300"): static or
 * thread-local storage, never NULL. */
const char *rpc_msg_name(uint16_t type);

int rpc_hello_encode(struct buf *b, const struct rpc_hello *m);
int rpc_hello_decode(const void *p, size_t n, struct rpc_hello *m);
int rpc_challenge_encode(struct buf *b, const struct rpc_challenge *m);
int rpc_challenge_decode(const void *p, size_t n, struct rpc_challenge *m);
/* AUTH and AUTH_OK share this layout. */
int rpc_proof_encode(struct buf *b, const struct rpc_proof *m);
int rpc_proof_decode(const void *p, size_t n, struct rpc_proof *m);
/* Text longer than RPC_ERROR_TEXT_MAX is cut on encode. */
int rpc_error_encode(struct buf *b, const struct rpc_error *m);
int rpc_error_decode(const void *p, size_t n, struct rpc_error *m);
int rpc_echo_req_encode(struct buf *b, const struct rpc_echo_req *m);
int rpc_echo_req_decode(const void *p, size_t n, struct rpc_echo_req *m);
int rpc_echo_resp_encode(struct buf *b, const struct rpc_echo_resp *m);
int rpc_echo_resp_decode(const void *p, size_t n, struct rpc_echo_resp *m);

/* STATS reply: the server's connection counters (rpc.h struct rpc_stats). */
struct rpc_stats_resp {
	uint64_t accepted, auth_fail, bad_input, requests, handshake_timeout;
	uint64_t accepted_local; /* 0 from a server older than the field */
};
int rpc_stats_resp_encode(struct buf *b, const struct rpc_stats_resp *m);
int rpc_stats_resp_decode(const void *p, size_t n, struct rpc_stats_resp *m);

#endif
