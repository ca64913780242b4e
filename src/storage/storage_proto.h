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

enum sto_msg_type {
	STO_MSG_WRITE = 300,
	STO_MSG_READ = 301,
	STO_MSG_REMOVE = 302,
	STO_MSG_QUERY = 303,
	STO_MSG_STAT = 304,
	STO_MSG_DUMP = 305,
	STO_MSG_SYNC_DONE = 306,
	STO_MSG_WITNESS = 307,
};

#define STO_MAX_BATCH 1024   /* ranges in one READ */
#define STO_MAX_DUMP 4096    /* entries in one DUMP reply */

enum sto_write_flags {
	STO_WF_REPLACE = 1 << 0,   /* the chunk becomes exactly the data (off must be 0) */
	STO_WF_FORWARDED = 1 << 1, /* sent by the predecessor in the chain, version assigned */
	STO_WF_SYNC = 1 << 2,      /* a resync write from the predecessor */
};

enum sto_read_flags {
	STO_RF_RELAXED = 1 << 0, /* return a chunk even while an update is pending */
};

/* WRITE req; the bulk is LEN bytes of data with CRC32C CRC. */
struct sto_write_req {
	uint32_t target, chain, chain_ver;
	uint64_t ino;
	uint32_t idx, off, len, crc;
	uint64_t update_ver;       /* 0 from clients; the head assigns */
	uint32_t flags;            /* STO_WF_* */
	uint64_t client, channel, seq; /* exactly-once key; seq 0 = untracked */
};
struct sto_write_resp {
	uint64_t commit_ver;
	uint32_t len, crc; /* the chunk after the write */
};

struct sto_read_range {
	uint32_t target, chain, chain_ver;
	uint64_t ino;
	uint32_t idx, off, len;
};
struct sto_read_req {
	uint32_t flags; /* STO_RF_* */
	uint32_t n;
	struct sto_read_range *r; /* encode: borrowed; decode: into caller's array */
};
/* Per range: RESULT bytes returned (they follow in the bulk, in order) or
 * an error; CRC is the CRC32C of the returned bytes. */
struct sto_read_res {
	int32_t result;
	uint32_t crc;
	uint64_t commit_ver;
};
struct sto_read_resp {
	uint32_t n;
	struct sto_read_res *r;
};

struct sto_remove_req {
	uint32_t target, chain, chain_ver;
	uint64_t ino;
	uint32_t begin, end; /* chunk indexes [begin, end) */
	uint32_t flags;      /* STO_WF_FORWARDED / STO_WF_SYNC */
	uint64_t client, channel, seq;
};
struct sto_remove_resp {
	uint32_t removed;
};

struct sto_query_req {
	uint32_t target, chain;
	uint64_t ino;
	uint32_t idx;
	uint8_t last; /* 1: the inode's last chunk (idx ignored) */
};
struct sto_query_resp {
	uint32_t idx, len, crc, chain_ver;
	uint64_t commit_ver, pending_ver;
};

struct sto_stat_req {
	uint32_t target;
};
struct sto_stat_resp {
	uint64_t capacity, used, chunks, corrupt_reads;
};

struct sto_dump_ent {
	uint64_t ino;
	uint32_t idx, len, crc, chain_ver;
	uint64_t commit_ver;
};
struct sto_dump_req {
	uint32_t target, chain;
	uint64_t from_ino; /* first chunk id to list */
	uint32_t from_idx;
	uint32_t max;      /* 1..STO_MAX_DUMP */
};
struct sto_dump_resp {
	uint8_t more; /* 1: continue after the last entry */
	uint32_t n;
	struct sto_dump_ent *e;
};

struct sto_sync_done_req {
	uint32_t target, chain, chain_ver;
};

/* WITNESS: a service that lost mgmtd asks a chain peer whether it lost
 * mgmtd too (fence_witness.h). */
struct sto_witness_req {
	uint32_t node;            /* the asker's node id (for logs) */
	uint64_t routing_version; /* the asker's routing version */
};
struct sto_witness_resp {
	uint64_t contact_age_ms;  /* since the peer last heard from mgmtd; UINT64_MAX: never */
	uint64_t routing_version; /* the peer's routing version */
	uint32_t promise_ms;      /* > 0: lost too; the peer serves nothing newer for this long */
};

int sto_write_req_encode(struct buf *b, const struct sto_write_req *m);
int sto_write_req_decode(const void *p, size_t n, struct sto_write_req *m);
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
