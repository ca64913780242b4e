/* routing.h - routing info: the cluster map every service and client uses.
 *
 * Routing info = {version, nodes, targets, chains, chain tables}. mgmtd owns
 * it, bumps the version on every change, persists it record by record in the
 * KV store and hands it out whole in the long-poll "changes since V" reply.
 * This module is the data model and its codec; it does no I/O.
 *
 * Id scheme (decimal, so an operator can read an id at a glance):
 *   node id    1..ROUTE_NODE_ID_MAX, assigned at registration
 *   target id  node_id * 1000 + slot, slot 1..999 (the node's n-th target):
 *              target 6005 is the 5th target of node 6
 *   chain id   table_id * 1000000 + index, index 1..999999 (its position
 *              when the table was generated): chain 1000010 is the 10th
 *              chain generated for table 1
 *   table id   1..ROUTE_TABLE_ID_MAX
 * The scheme is how ids are allocated, not a lookup shortcut: a target's
 * node is its node_id field (a disk moved to another host keeps its id).
 *
 * Encoding (little-endian; wire.h). A whole routing info:
 *
 *   OFFSET SIZE  FIELD
 *   0      4     magic "CFRT"
 *   4      2     format major (1): a decoder refuses any other
 *   6      2     format minor: appended fields; decoders accept any
 *   8      4     body length B (bytes after this header, exactly)
 *   12     4     CRC32C of the body
 *   16     B     body:
 *                  u64 routing version
 *                  u32 count, count x node record      (ids increasing)
 *                  u32 count, count x target record    (ids increasing)
 *                  u32 count, count x chain record     (ids increasing)
 *                  u32 count, count x table record     ((id, version) increasing)
 *                  bytes appended by later minors: skipped
 *
 * Every record is u32 length L + L bytes, so fields appended to a record
 * later are skipped by older decoders. Record fields (blob = u32 length +
 * bytes):
 *   node    u32 id, u8 type, u8 state, blob address (<= ROUTE_ADDR_MAX, no NUL)
 *   target  u32 id, u32 node id, u32 chain id (0: none), u8 local state,
 *           u8 public state, u64 capacity bytes, u64 used bytes
 *   chain   u32 id, u32 version, u8 n (1..CHAIN_MAX_TARGETS),
 *           n x (u32 target id, u8 public state), chain order
 *   table   u32 id, u32 version, u32 n (<= ROUTE_CHAIN_INDEX_MAX), n x u32 chain id
 * The record codecs are public so the KV store can keep one record per key
 * (routing info is larger than a KV value may be).
 *
 * Decoding checks every length and count against the bytes present before
 * allocating, every enum value, id ranges and uniqueness, and that the
 * references agree (route_info_check). Invalid input gives -CFS_EPROTO and
 * leaves nothing allocated.
 */
#ifndef CFS_MGMTD_ROUTING_H
#define CFS_MGMTD_ROUTING_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "mgmtd/chain_state.h"

#define ROUTE_MAGIC        0x54524643u /* "CFRT" little-endian */
#define ROUTE_FORMAT_MAJOR 1
#define ROUTE_FORMAT_MINOR 0
#define ROUTE_HEADER_LEN   16

#define ROUTE_TARGET_SLOTS    1000u
#define ROUTE_CHAIN_SLOTS     1000000u
#define ROUTE_NODE_ID_MAX     4294966u /* (UINT32_MAX - 999) / 1000 */
#define ROUTE_TABLE_ID_MAX    4293u    /* (UINT32_MAX - 999999) / 1000000 */
#define ROUTE_SLOT_MAX        999u
#define ROUTE_CHAIN_INDEX_MAX 999999u

#define ROUTE_ADDR_MAX    255 /* "host:port" */
#define ROUTE_MAX_NODES   65536
#define ROUTE_MAX_TARGETS (1u << 20)
#define ROUTE_MAX_CHAINS  (1u << 20)
#define ROUTE_MAX_TABLES  4096

static inline uint32_t route_target_id(uint32_t node_id, uint32_t slot)
{
	return node_id * ROUTE_TARGET_SLOTS + slot;
}
static inline uint32_t route_target_node(uint32_t target_id)
{
	return target_id / ROUTE_TARGET_SLOTS;
}
static inline uint32_t route_target_slot(uint32_t target_id)
{
	return target_id % ROUTE_TARGET_SLOTS;
}
static inline uint32_t route_chain_id(uint32_t table_id, uint32_t index)
{
	return table_id * ROUTE_CHAIN_SLOTS + index;
}
static inline uint32_t route_chain_table(uint32_t chain_id)
{
	return chain_id / ROUTE_CHAIN_SLOTS;
}
static inline uint32_t route_chain_index(uint32_t chain_id)
{
	return chain_id % ROUTE_CHAIN_SLOTS;
}

enum route_node_type {
	ROUTE_NODE_MGMTD = 1,
	ROUTE_NODE_META = 2,
	ROUTE_NODE_STORAGE = 3,
	ROUTE_NODE_CLIENT = 4,
};

enum route_node_state {
	ROUTE_NODE_ACTIVE = 1,   /* holds a heartbeat lease */
	ROUTE_NODE_FAILED = 2,   /* lease lapsed */
	ROUTE_NODE_DISABLED = 3, /* taken out by an operator */
};

struct route_node {
	uint32_t id;
	enum route_node_type type;
	enum route_node_state state;
	char addr[ROUTE_ADDR_MAX + 1]; /* NUL-terminated "host:port" */
};

struct route_target {
	uint32_t id;
	uint32_t node_id;
	uint32_t chain_id;                  /* 0 while in no chain */
	enum chain_local_state local_state; /* last reported */
	enum chain_pub_state pub_state;     /* as in its chain */
	uint64_t capacity;                  /* bytes */
	uint64_t used;                      /* bytes */
};

struct route_chain_member {
	uint32_t target_id;
	enum chain_pub_state state;
};

struct route_chain {
	uint32_t id;
	uint32_t version;
	uint32_t n;                                     /* 1..CHAIN_MAX_TARGETS */
	struct route_chain_member m[CHAIN_MAX_TARGETS]; /* chain order, head first */
};

struct route_table {
	uint32_t id;
	uint32_t version;
	uint32_t n;
	uint32_t *chains; /* owned: n chain ids */
};

/* Arrays are owned and sorted by id ((id, version) for tables). One owner
 * thread at a time; readers of a published copy must not modify it. */
struct route_info {
	uint64_t version;
	size_t n_nodes, n_targets, n_chains, n_tables;
	struct route_node *nodes;
	struct route_target *targets;
	struct route_chain *chains;
	struct route_table *tables;
};

void route_info_init(struct route_info *ri);
/* Frees everything; ri is empty and reusable after. NULL-safe. */
void route_info_fini(struct route_info *ri);

/* Copy a record in, keeping order. 0, -EEXIST for a taken id (table: id and
 * version), -EINVAL for a record the decoder would reject (bad enum, zero
 * id, address too long, chain size). add_table copies the chain list.
 * Aborts on out-of-memory (mgmtd bookkeeping). */
int route_info_add_node(struct route_info *ri, const struct route_node *n);
int route_info_add_target(struct route_info *ri, const struct route_target *t);
int route_info_add_chain(struct route_info *ri, const struct route_chain *c);
int route_info_add_table(struct route_info *ri, uint32_t id, uint32_t version,
                         const uint32_t *chains, uint32_t n);

/* Binary search; the pointer is valid until ri next changes. NULL if absent. */
const struct route_node *route_find_node(const struct route_info *ri, uint32_t id);
const struct route_target *route_find_target(const struct route_info *ri, uint32_t id);
const struct route_chain *route_find_chain(const struct route_info *ri, uint32_t id);
/* The newest version of table ID. */
const struct route_table *route_find_table(const struct route_info *ri, uint32_t id);

/* Cross-checks references: every target's node exists; every chain member
 * exists, is in no other chain, names this chain as its chain_id and has
 * the same public state; every table's chains exist. 0 or -EINVAL with the
 * first problem in ERR (may be NULL). */
int route_info_check(const struct route_info *ri, char *err, size_t errlen);

/* Runs chain_transition on every chain with its targets' local_state and
 * node liveness (node state ACTIVE), writes back the new order, states and
 * chain versions, updates each member target's pub_state, and bumps
 * ri->version once if any chain changed. This is mgmtd's periodic chain
 * update; an operator's "set target offline" is its local_state set to
 * OFFLINE before the call. Returns the number of chains changed, or
 * -EINVAL (a chain names a missing target or node) or -EOVERFLOW (a
 * version would wrap); on error nothing is modified. */
int route_info_update_chains(struct route_info *ri);

/* Appends the encoding. 0 or -ENOMEM (out keeps its old length then).
 * Like the record encoders it does not validate: encode what
 * route_info_check accepts, or the decoder will refuse it. */
int route_info_encode(const struct route_info *ri, struct buf *out);
/* Decodes N bytes at P into OUT (initialised here; route_info_fini it on
 * success). 0, -CFS_EPROTO (malformed, checksum, unknown major, failed
 * route_info_check) or -ENOMEM; on error OUT is empty. */
int route_info_decode(const uint8_t *p, size_t n, struct route_info *out);

/* Record codecs (the bodies without the u32 length prefix). Encoders
 * append and return 0 or -ENOMEM; they do not validate (the decoder does)
 * but never read past a record's arrays. Decoders read exactly N bytes, skip
 * unknown trailing bytes and return 0 or -CFS_EPROTO (or -ENOMEM for a
 * table; release its chains with route_table_fini). */
int route_node_encode(const struct route_node *n, struct buf *out);
int route_node_decode(const uint8_t *p, size_t n, struct route_node *out);
int route_target_encode(const struct route_target *t, struct buf *out);
int route_target_decode(const uint8_t *p, size_t n, struct route_target *out);
int route_chain_encode(const struct route_chain *c, struct buf *out);
int route_chain_decode(const uint8_t *p, size_t n, struct route_chain *out);
int route_table_encode(const struct route_table *t, struct buf *out);
int route_table_decode(const uint8_t *p, size_t n, struct route_table *out);
void route_table_fini(struct route_table *t);

/* One record as a stored value (a KV value per node, target, chain or
 * table), sealed with magic, kind, format and checksum (STYLE.md §7):
 *
 *   OFFSET SIZE  FIELD
 *   0      4     magic "CFRR"
 *   4      1     record kind (enum route_rec)
 *   5      1     format major (ROUTE_FORMAT_MAJOR)
 *   6      2     format minor: any accepted
 *   8      4     CRC32C of the record bytes
 *   12     L     the record (as from route_*_encode)
 */
enum route_rec {
	ROUTE_REC_NODE = 1,
	ROUTE_REC_TARGET = 2,
	ROUTE_REC_CHAIN = 3,
	ROUTE_REC_TABLE = 4,
	/* mgmtd's own records (mgmtd_store.h gives their layouts) */
	ROUTE_REC_LEASE = 16,
	ROUTE_REC_CLUSTER = 17,
	ROUTE_REC_VERSION = 18,
	ROUTE_REC_ADMIN = 19,
};
#define ROUTE_SEAL_LEN 12

/* Appends the sealed form of N record bytes at REC. 0 or -ENOMEM. */
int route_seal(enum route_rec kind, const uint8_t *rec, size_t n, struct buf *out);
/* Checks a sealed value of N bytes at P holding a record of KIND and points
 * *rec / *rec_len at the record inside P (borrowed). 0 or -CFS_EPROTO
 * (short, wrong magic, kind or major, bad checksum). */
int route_unseal(const uint8_t *p, size_t n, enum route_rec kind, const uint8_t **rec,
                 size_t *rec_len);

const char *route_node_type_name(unsigned v);
const char *route_node_state_name(unsigned v);

#endif
