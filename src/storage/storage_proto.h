/* storage_proto.h - messages of the storage service (RPC types 300..399).
 *
 * The catalog entry in net/rpc_proto.h gives each layout in one line; this
 * header holds the structs and codecs. Encoders append to a struct buf and
 * return 0 or -ENOMEM; decoders read N bytes at P, skip unknown trailing
 * bytes and return 0 or -CFS_EPROTO (truncated, a count over its limit, an
 * unknown flag bit is NOT an error: flags are for appending features).
 * Pointers a decoder stores borrow from P. Thread-safe.
 *
 * Addressing: a request names a target id. A storage service registered
 * with mgmtd owns targets node_id * 1000 + slot; a standalone one (no
 * mgmtd) owns slots 1..N as ids 1..N. CHAIN is the chain id the sender
 * believes the target is in (0: direct addressing, no replication) and
 * CHAIN_VER its version; a replicated target rejects a mismatch with
 * -CFS_ECHAIN_VERSION.
 */
#ifndef CFS_STORAGE_STORAGE_PROTO_H
#define CFS_STORAGE_STORAGE_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/wire.h"

enum sto_msg_type {
	STO_MSG_WRITE = 300,
	STO_MSG_READ = 301,
	STO_MSG_REMOVE = 302,
	STO_MSG_QUERY = 303,
	STO_MSG_STAT = 304,
	STO_MSG_DUMP = 305,
	STO_MSG_SYNC_DONE = 306,
	STO_MSG_WITNESS = 307,
	/* Same-host shared-memory bulk path (docs/rpc.md "Shared memory"). */
	STO_MSG_SHM_REG = 310,
	STO_MSG_SHM_READ = 311,
	STO_MSG_SHM_WRITE = 312,
	STO_MSG_SHM_UNREG = 313,
	STO_MSG_SHM_READV = 314,
	/* Short-circuit reads (docs/rpc.md "Short-circuit reads"). */
	STO_MSG_SC_MAP = 315,
	STO_MSG_SC_MAP_MANY = 316,
	/* Cuts a chunk short at its chain's head (craq_write.c "Truncates"). */
	STO_MSG_TRUNCATE = 317,
	/* A replace of a chunk on a condition on its version, decided at the
	 * chain's head (craq_write.c "Conditional writes"). */
	STO_MSG_WRITE_IF = 320,
};

#define STO_MAX_BATCH 1024   /* ranges in one READ */
#define STO_MAX_DUMP 4096    /* entries in one DUMP reply */

enum sto_write_flags {
	STO_WF_REPLACE = 1 << 0,   /* the chunk becomes exactly the data (off must be 0) */
	STO_WF_FORWARDED = 1 << 1, /* sent by the predecessor in the chain, version assigned */
	STO_WF_SYNC = 1 << 2,      /* a resync write from the predecessor */
	/* Cache mode: acknowledge once the data write completed and the
	 * chunk's metadata is committed, without a device flush or fdatasync
	 * for this write (CHUNK_WF_NOFLUSH: the engine decides per batch).
	 * Forwarded down the chain with the write. A service that does not
	 * know the bit ignores it (unknown flag bits are not errors) and
	 * syncs as for any write. */
	STO_WF_NOFLUSH = 1 << 3,
	/* Apply only if the chunk is absent: checked by the chain's head
	 * under the chunk's lock; refused with -EEXIST otherwise (an answer,
	 * cached for exactly-once like a success). Not forwarded: the
	 * successors take the head's order. A fence for a writer whose claim
	 * may have expired (an inline file's converter, file_io_idata.c); a
	 * direct write (chain 0) and a service that does not know the bit
	 * ignore it. */
	STO_WF_IF_ABSENT = 1 << 4,
};

enum sto_read_flags {
	STO_RF_RELAXED = 1 << 0, /* return a chunk even while an update is pending */
};

/* Each fixed message is one field list in wire order (wire.h, "Messages
 * declared once"): the struct and both codec directions come from it. */

/* WRITE req; the bulk is LEN bytes of data with CRC32C CRC. */
#define STO_WRITE_REQ(F)                                                   \
	F(u32, target) F(u32, chain) F(u32, chain_ver)                     \
	F(u64, ino)                                                        \
	F(u32, idx) F(u32, off) F(u32, len) F(u32, crc)                    \
	F(u64, update_ver) /* 0 from clients (WRITE_IF: see there) */      \
	F(u32, flags)      /* STO_WF_* */                                  \
	F(u64, client) F(u64, channel) F(u64, seq) /* exactly-once key; seq 0 = untracked */
WIRE_STRUCT(sto_write_req, STO_WRITE_REQ);

/* WRITE_IF req: a WRITE (the same fields, then EXPECT, EXPECT_LEN,
 * EXPECT_CRC) that replaces the chunk with the data (off 0; STO_WF_REPLACE
 * implied) only if the chunk at the chain's head is at version EXPECT
 * with length EXPECT_LEN and CRC32C EXPECT_CRC (a chunk removed and made
 * again restarts at version 1: the length and CRC make such a chunk
 * match only with the very same bytes), with STO_WIF_ABSENT (0) for "no
 * such chunk" and STO_WIF_PRESENT for "any version" (length and CRC
 * ignored). Decided under the chunk's lock at the head; a mismatch is
 * refused with -ESTALE (an answer: cached for exactly-once like a
 * success, nothing written or forwarded). What the successors get is an
 * ordinary replace WRITE at the head's next version. Chains only (chain
 * != 0: -EINVAL otherwise). A service from before the message answers
 * -CFS_EBADMSG_TYPE: the condition is never ignored. With EXPECT
 * STO_WIF_ABSENT, a nonzero UPDATE_VER (at most STO_WIF_CREATE_VER_MAX)
 * is the version the chunk is made at (else 1; a service from before
 * that rule always makes it at 1).
 * Resp: a WRITE response. */
#define STO_WIF_ABSENT 0ULL
#define STO_WIF_PRESENT UINT64_MAX
/* The highest first version a WRITE_IF "if absent" may name (more:
 * -EINVAL). A chunk's next write numbers from there, one up each: named
 * near UINT64_MAX, its version would wrap to 0 (read as "absent" by the
 * inline conversion, file_io.h) or reach STO_WIF_PRESENT (a condition
 * that then matches any version). */
#define STO_WIF_CREATE_VER_MAX ((1ULL << 63) - 1)
#define STO_WRITE_IF_REQ(F) STO_WRITE_REQ(F) F(u64, expect) F(u32, expect_len) F(u32, expect_crc)
WIRE_STRUCT(sto_write_if_req, STO_WRITE_IF_REQ);

#define STO_WRITE_RESP(F) \
	F(u64, commit_ver) \
	F(u32, len) F(u32, crc) /* the chunk after the write */
WIRE_STRUCT(sto_write_resp, STO_WRITE_RESP);

#define STO_READ_RANGE(F)                              \
	F(u32, target) F(u32, chain) F(u32, chain_ver) \
	F(u64, ino)                                    \
	F(u32, idx) F(u32, off) F(u32, len)
WIRE_STRUCT(sto_read_range, STO_READ_RANGE);

/* READ req: u32 flags, u32 n, n ranges. */
struct sto_read_req {
	uint32_t flags; /* STO_RF_* */
	uint32_t n;
	struct sto_read_range *r; /* encode: borrowed; decode: into caller's array */
};
/* Per range: RESULT bytes returned (they follow in the bulk, in order) or
 * an error; CRC is the CRC32C of the returned bytes. */
#define STO_READ_RES(F) F(i32, result) F(u32, crc) F(u64, commit_ver)
WIRE_STRUCT(sto_read_res, STO_READ_RES);
struct sto_read_resp {
	uint32_t n;
	struct sto_read_res *r;
};

#define STO_REMOVE_REQ(F)                                  \
	F(u32, target) F(u32, chain) F(u32, chain_ver)     \
	F(u64, ino)                                        \
	F(u32, begin) F(u32, end) /* chunk indexes [begin, end) */ \
	F(u32, flags)             /* STO_WF_FORWARDED / STO_WF_SYNC */ \
	F(u64, client) F(u64, channel) F(u64, seq)
WIRE_STRUCT(sto_remove_req, STO_REMOVE_REQ);

#define STO_REMOVE_RESP(F) F(u32, removed)
WIRE_STRUCT(sto_remove_resp, STO_REMOVE_RESP);

/* TRUNCATE req: chunk (INO, IDX) becomes its first LEN bytes (LEN >= 1:
 * a cut to 0 is a REMOVE); a chunk no longer than LEN is left alone.
 * Sent to the chain's head only (chain != 0); it is applied there under
 * the chunk's lock and goes down the chain as a replace WRITE of the kept
 * bytes at the next version, so every replica orders it against the
 * chunk's writes as the head did. FLAGS: none defined yet (unknown bits
 * ignored). Resp: a WRITE response, the chunk after the cut (or as it
 * was, when it was no longer than LEN). -ENOENT if the head has no such
 * chunk. */
#define STO_TRUNCATE_REQ(F)                                \
	F(u32, target) F(u32, chain) F(u32, chain_ver)     \
	F(u64, ino)                                        \
	F(u32, idx) F(u32, len)                            \
	F(u32, flags)                                      \
	F(u64, client) F(u64, channel) F(u64, seq)
WIRE_STRUCT(sto_truncate_req, STO_TRUNCATE_REQ);

#define STO_QUERY_REQ(F)              \
	F(u32, target) F(u32, chain)  \
	F(u64, ino)                   \
	F(u32, idx)                   \
	F(u8, last) /* 1: the inode's last chunk (idx ignored) */
WIRE_STRUCT(sto_query_req, STO_QUERY_REQ);

#define STO_QUERY_RESP(F)                                   \
	F(u32, idx) F(u32, len) F(u32, crc) F(u32, chain_ver) \
	F(u64, commit_ver) F(u64, pending_ver)
WIRE_STRUCT(sto_query_resp, STO_QUERY_RESP);

#define STO_STAT_REQ(F) F(u32, target)
WIRE_STRUCT(sto_stat_req, STO_STAT_REQ);

#define STO_STAT_RESP(F) F(u64, capacity) F(u64, used) F(u64, chunks) F(u64, corrupt_reads)
WIRE_STRUCT(sto_stat_resp, STO_STAT_RESP);

#define STO_DUMP_ENT(F)                                         \
	F(u64, ino)                                             \
	F(u32, idx) F(u32, len) F(u32, crc) F(u32, chain_ver)   \
	F(u64, commit_ver)
WIRE_STRUCT(sto_dump_ent, STO_DUMP_ENT);

#define STO_DUMP_REQ(F)                                 \
	F(u32, target) F(u32, chain)                    \
	F(u64, from_ino) /* first chunk id to list */   \
	F(u32, from_idx)                                \
	F(u32, max) /* 1..STO_MAX_DUMP */
WIRE_STRUCT(sto_dump_req, STO_DUMP_REQ);

/* DUMP resp: u8 more, u32 n, n entries. */
struct sto_dump_resp {
	uint8_t more; /* 1: continue after the last entry */
	uint32_t n;
	struct sto_dump_ent *e;
};

#define STO_SYNC_DONE_REQ(F) F(u32, target) F(u32, chain) F(u32, chain_ver)
WIRE_STRUCT(sto_sync_done_req, STO_SYNC_DONE_REQ);

/* WITNESS: a service that lost mgmtd asks a chain peer whether it lost
 * mgmtd too (fence_witness.h). */
#define STO_WITNESS_REQ(F)                                              \
	F(u32, node)            /* the asker's node id (for logs) */    \
	F(u64, routing_version) /* the asker's routing version */
WIRE_STRUCT(sto_witness_req, STO_WITNESS_REQ);

#define STO_WITNESS_RESP(F)                                                                  \
	F(u64, contact_age_ms)  /* since the peer last heard from mgmtd; UINT64_MAX: never */ \
	F(u64, routing_version) /* the peer's routing version */                              \
	F(u32, promise_ms)      /* > 0: lost too; the peer serves nothing newer for this long */
WIRE_STRUCT(sto_witness_resp, STO_WITNESS_RESP);

/* SHM_REG req (a memfd passed with it, RPC_CALL_SEND_FD): SIZE bytes of it
 * to map; resp: the region id (server-wide unique, valid on this
 * connection only). */
#define STO_SHM_REG_REQ(F) F(u64, size) F(u32, flags)
WIRE_STRUCT(sto_shm_reg_req, STO_SHM_REG_REQ);
#define STO_SHM_REG_RESP(F) F(u64, region)
WIRE_STRUCT(sto_shm_reg_resp, STO_SHM_REG_RESP);
/* SHM_UNREG req: a region of this connection the client stops using;
 * resp: empty. From the reply on, a request naming the region fails
 * -ESTALE; the service unmaps it once the requests that already hold it
 * (reads waiting for the disk) are done, so nothing reaches the memfd
 * through this service afterwards (stor_shm.h). */
#define STO_SHM_UNREG_REQ(F) F(u64, region)
WIRE_STRUCT(sto_shm_unreg_req, STO_SHM_UNREG_REQ);
/* SHM_READ req: where the bytes go (CAP bytes at OFF of REGION), then a
 * READ request; resp: a READ response whose bytes are at OFF of the
 * region (compact, in range order) instead of in a bulk. */
#define STO_SHM_AT(F) F(u64, region) F(u64, off) F(u64, cap)
WIRE_STRUCT(sto_shm_at, STO_SHM_AT);
#define STO_SHM_AT_LEN 24

/* SHM_WRITE req: where the data is (the first LEN bytes of CAP at OFF of
 * REGION; LEN <= CAP), then a WRITE request; resp: a WRITE response. The
 * service copies the bytes out once and checks the CRC on its copy, so
 * what the client does to the window afterwards cannot change what is
 * written; the client keeps the window untouched until the reply all the
 * same (docs/rpc.md "Shared memory"). */
int sto_shm_write_req_encode(struct buf *b, const struct sto_shm_at *at,
			     const struct sto_write_req *m);
int sto_shm_write_req_decode(const void *p, size_t n, struct sto_shm_at *at,
			     struct sto_write_req *m);

int sto_shm_reg_req_encode(struct buf *b, const struct sto_shm_reg_req *m);
int sto_shm_reg_req_decode(const void *p, size_t n, struct sto_shm_reg_req *m);
int sto_shm_reg_resp_encode(struct buf *b, const struct sto_shm_reg_resp *m);
int sto_shm_reg_resp_decode(const void *p, size_t n, struct sto_shm_reg_resp *m);
int sto_shm_unreg_req_encode(struct buf *b, const struct sto_shm_unreg_req *m);
int sto_shm_unreg_req_decode(const void *p, size_t n, struct sto_shm_unreg_req *m);
int sto_shm_read_req_encode(struct buf *b, const struct sto_shm_at *at, const struct sto_read_req *m);
/* SHM_READV req: u64 region, u32 n, n x u64 off, then a READ request of n
 * ranges: range i's bytes go to OFF[i] of REGION (each checked to hold
 * the range's len), so scattered destinations need no copy at the
 * client; resp: a READ response, no bulk. OFFS holds CAP entries; the
 * decoder fails when the count differs from the READ request's. */
int sto_shm_readv_req_encode(struct buf *b, uint64_t region, const uint64_t *offs,
			     const struct sto_read_req *m);
int sto_shm_readv_req_decode(const void *p, size_t n, uint64_t *region, uint64_t *offs,
			     struct sto_read_req *m, struct sto_read_range *out, size_t cap);
/* SC_MAP req: map chunk (INO, IDX) of TARGET (in CHAIN) for direct reads;
 * REGION is this connection's SHM_REG region holding the slot table. */
#define STO_SC_MAP_REQ(F) F(u64, region) F(u32, target) F(u32, chain) F(u64, ino) F(u32, idx)
WIRE_STRUCT(sto_sc_map_req, STO_SC_MAP_REQ);
int sto_sc_map_req_encode(struct buf *b, const struct sto_sc_map_req *m);
int sto_sc_map_req_decode(const void *p, size_t n, struct sto_sc_map_req *m);
#define STO_SC_MAX_PATH 4096
/* The slot table a client registers for SC_MAP (a sealed memfd, SHM_REG):
 * a 64-byte header (u64 0: lease, CLOCK_MONOTONIC ms until which the
 * service vouches for its slots; u64 1: STO_SC_RECORDED when the service
 * records its leases for its successor, written before the first lease;
 * 0 from a service before 2026-12-06), then STO_SC_SLOTS u64 slot words. */
#define STO_SC_RECORDED 0x3143455243534353ull /* "SCSRCEC1": docs/rpc.md, the lease */
#define STO_SC_SLOTS 16384u
#define STO_SC_HDR 64u
#define STO_SC_TABLE_BYTES (STO_SC_HDR + 8ull * STO_SC_SLOTS)
/* SC_MAP resp: the fixed fields, then NPAGES x u32 page CRC32Cs
 * (npages == ceil(len / 4096), len <= 64 MiB), then the data file's path
 * as a blob (u32 length <= STO_SC_MAX_PATH, bytes). */
#define STO_SC_MAP_FIX(F)                                                         \
	F(u32, slot) F(u64, seq) /* the slot word's value while the mapping holds */ \
	F(u32, pid)              /* the service's pid (death detection) */          \
	F(u64, dev) F(u64, inode) /* the data file's identity */                    \
	F(u64, file_off)         /* the chunk's first byte in that file */          \
	F(u32, len) F(u64, commit_ver) F(u32, npages)
WIRE_STRUCT(sto_sc_map_fix, STO_SC_MAP_FIX);
struct sto_sc_map_resp {
	struct sto_sc_map_fix f;
	const uint8_t *crcs;   /* borrowed: npages little-endian u32 */
	const uint8_t *path;   /* borrowed, not NUL-terminated */
	uint32_t path_len;
};
int sto_sc_map_resp_encode(struct buf *b, const struct sto_sc_map_fix *f, const uint32_t *crcs,
			   const char *path);
int sto_sc_map_resp_decode(const void *p, size_t n, struct sto_sc_map_resp *m);
/* SC_MAP_MANY req: u64 region (as SC_MAP's), u32 n (1..STO_SC_MAP_MANY_MAX;
 * more is refused with -E2BIG), n entries, each an SC_MAP request without
 * the region. Resp: u32 n (the request's), then per entry in order an i32
 * result and a blob (u32 length, bytes): when the result is 0 an SC_MAP
 * response (the entry's mapping, every rule of SC_MAP's), else empty.
 * A server stops mapping once its answer holds STO_SC_MAP_MANY_BYTES:
 * the later entries answer -EMSGSIZE (map them again, alone or in a
 * later request). An older server answers the whole request
 * -CFS_EBADMSG_TYPE (and closes the connection). */
#define STO_SC_MAP_MANY_MAX 256u
#define STO_SC_MAP_MANY_BYTES (4u << 20)
/* The largest SC_MAP response: 64 MiB of pages' CRCs, a path, the fields. */
#define STO_SC_MAP_BODY_MAX ((64u << 20) / 4096u * 4u + STO_SC_MAX_PATH + 128u)
#define STO_SC_MAP_ENT(F) F(u32, target) F(u32, chain) F(u64, ino) F(u32, idx)
WIRE_STRUCT(sto_sc_map_ent, STO_SC_MAP_ENT);
struct sto_sc_map_many_req {
	uint64_t region;
	uint32_t n;
	struct sto_sc_map_ent *e; /* encode: borrowed; decode: into caller's array */
};
struct sto_sc_map_many_res {
	int32_t result;
	const uint8_t *body; /* borrowed: an SC_MAP response when result == 0 */
	uint32_t len;
};
struct sto_sc_map_many_resp {
	uint32_t n;
	struct sto_sc_map_many_res *r;
};
int sto_sc_map_many_req_encode(struct buf *b, const struct sto_sc_map_many_req *m);
/* Decodes at most CAP entries into OUT (m->e = OUT); more is -CFS_EPROTO. */
int sto_sc_map_many_req_decode(const void *p, size_t n, struct sto_sc_map_many_req *m,
			       struct sto_sc_map_ent *out, size_t cap);
/* Encodes the head (u32 n); each entry follows with ..._res_encode. */
int sto_sc_map_many_resp_head_encode(struct buf *b, uint32_t n);
int sto_sc_map_many_res_encode(struct buf *b, int32_t result, const void *body, uint32_t len);
/* At most CAP entries into OUT (m->r = OUT); an entry whose result is 0
 * must hold a well-formed SC_MAP response, else -CFS_EPROTO. */
int sto_sc_map_many_resp_decode(const void *p, size_t n, struct sto_sc_map_many_resp *m,
				struct sto_sc_map_many_res *out, size_t cap);
int sto_shm_read_req_decode(const void *p, size_t n, struct sto_shm_at *at, struct sto_read_req *m,
			    struct sto_read_range *out, size_t cap);

int sto_write_req_encode(struct buf *b, const struct sto_write_req *m);
int sto_write_req_decode(const void *p, size_t n, struct sto_write_req *m);
int sto_write_if_req_encode(struct buf *b, const struct sto_write_if_req *m);
int sto_write_if_req_decode(const void *p, size_t n, struct sto_write_if_req *m);
int sto_write_resp_encode(struct buf *b, const struct sto_write_resp *m);
int sto_write_resp_decode(const void *p, size_t n, struct sto_write_resp *m);
int sto_read_req_encode(struct buf *b, const struct sto_read_req *m);
/* Decodes at most CAP ranges into OUT (m->r = OUT); more is -CFS_EPROTO. */
int sto_read_req_decode(const void *p, size_t n, struct sto_read_req *m,
			struct sto_read_range *out, size_t cap);
int sto_read_resp_encode(struct buf *b, const struct sto_read_resp *m);
int sto_read_resp_decode(const void *p, size_t n, struct sto_read_resp *m,
			 struct sto_read_res *out, size_t cap);
int sto_remove_req_encode(struct buf *b, const struct sto_remove_req *m);
int sto_remove_req_decode(const void *p, size_t n, struct sto_remove_req *m);
int sto_remove_resp_encode(struct buf *b, const struct sto_remove_resp *m);
int sto_remove_resp_decode(const void *p, size_t n, struct sto_remove_resp *m);
int sto_truncate_req_encode(struct buf *b, const struct sto_truncate_req *m);
int sto_truncate_req_decode(const void *p, size_t n, struct sto_truncate_req *m);
int sto_query_req_encode(struct buf *b, const struct sto_query_req *m);
int sto_query_req_decode(const void *p, size_t n, struct sto_query_req *m);
int sto_query_resp_encode(struct buf *b, const struct sto_query_resp *m);
int sto_query_resp_decode(const void *p, size_t n, struct sto_query_resp *m);
int sto_stat_req_encode(struct buf *b, const struct sto_stat_req *m);
int sto_stat_req_decode(const void *p, size_t n, struct sto_stat_req *m);
int sto_stat_resp_encode(struct buf *b, const struct sto_stat_resp *m);
int sto_stat_resp_decode(const void *p, size_t n, struct sto_stat_resp *m);
int sto_dump_req_encode(struct buf *b, const struct sto_dump_req *m);
int sto_dump_req_decode(const void *p, size_t n, struct sto_dump_req *m);
int sto_dump_resp_encode(struct buf *b, const struct sto_dump_resp *m);
int sto_dump_resp_decode(const void *p, size_t n, struct sto_dump_resp *m,
			 struct sto_dump_ent *out, size_t cap);
int sto_sync_done_req_encode(struct buf *b, const struct sto_sync_done_req *m);
int sto_sync_done_req_decode(const void *p, size_t n, struct sto_sync_done_req *m);
int sto_witness_req_encode(struct buf *b, const struct sto_witness_req *m);
int sto_witness_req_decode(const void *p, size_t n, struct sto_witness_req *m);
int sto_witness_resp_encode(struct buf *b, const struct sto_witness_resp *m);
int sto_witness_resp_decode(const void *p, size_t n, struct sto_witness_resp *m);

#endif
