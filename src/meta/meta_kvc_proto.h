/* meta_kvc_proto.h - codecs of the KVCache index messages (types 250..259).
 *
 * The KVCache index (meta_kvcache.h) maps a key of a namespace to a page
 * slot of the namespace's slab files. Its messages are separate from the
 * file-system ones (meta_proto.h) because their payload is a batch of
 * items, not one inode operation: one struct kvc_msg carries a request or
 * a reply of every type, and every item of a batch is encoded the same way
 * in both directions (key, status, slot, version, length, crc, last_used),
 * so one decoder covers the family.
 *
 * Layout (little-endian): type u16, name blob (u32 length, <= KVC_NAME_MAX),
 * ns_id u64, owner u64, lease_ms u32, flags u32, then a namespace record
 * (page_size u32, nslots u64, nslabs u32, slots_per_slab u64, touch_ms u32,
 * lease_ms u32, id u64, created i64, dir blob <= KVC_DIR_MAX, nslabs x ino
 * u64), then stats (8 x u64), then n u32 <= KVC_BATCH_MAX and n items
 * (key blob <= KVC_KEY_MAX, status i32, slot u64, version u64, len u32,
 * crc u32, last_used u64), then fields appended later, each absent (zero)
 * in an older peer's message: ns ttl_ms u32, ttl_ms u32, evict_recent u64,
 * token u64, ns durability u32.
 * Unknown trailing bytes are skipped.
 *
 * Decoders return 0, -CFS_EPROTO (truncated, a count or length over its
 * bound, a type outside 250..259) or -ENOMEM; items and their keys borrow
 * from the payload except m->items, which the decoder allocates and
 * kvc_msg_fini frees. Encoders return 0 or -ENOMEM and do not validate.
 * Thread-safe.
 */
#ifndef CFS_META_META_KVC_PROTO_H
#define CFS_META_META_KVC_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

enum meta_kvc_type {
	META_RPC_KVC_NS_CREATE = 250, /* name, ns, token -> ns */
	META_RPC_KVC_NS_GET = 251,    /* name -> ns */
	META_RPC_KVC_NS_DELETE = 252, /* name, token -> ns (the one deleted) */
	META_RPC_KVC_LOOKUP = 253,    /* ns_id, flags (KVC_LOOKUP_*), keys -> items */
	META_RPC_KVC_RESERVE = 254,   /* ns_id, owner, lease_ms, token, keys + len -> items */
	META_RPC_KVC_PUBLISH = 255,   /* ns_id, items (key slot version len crc) -> status */
	META_RPC_KVC_DELETE = 256,    /* ns_id, token, keys -> status */
	META_RPC_KVC_CLEAR = 257,     /* ns_id -> () */
	META_RPC_KVC_RELEASE = 258,   /* ns_id, items (slot version): drop reservations */
	META_RPC_KVC_STATS = 259,     /* ns_id, flags (KVC_STATS_RECLAIM) -> stats */
};
#define META_RPC_KVC_FIRST META_RPC_KVC_NS_CREATE
#define META_RPC_KVC_LAST META_RPC_KVC_STATS

#define KVC_NAME_MAX 64          /* namespace name bytes */
#define KVC_DIR_MAX 1024         /* slab directory path bytes */
#define KVC_KEY_MAX 256          /* key bytes */
#define KVC_BATCH_MAX 4096       /* items per call */
#define KVC_SLABS_MAX 1024       /* slab files per namespace */
#define KVC_PAGE_MIN (64u << 10) /* page sizes: powers of two in [min, max] */
#define KVC_PAGE_MAX (16u << 20)

/* Item statuses besides 0 (done) and -errno. */
enum kvc_status {
	KVC_ST_OK = 0,
	KVC_ST_EXISTS = 1, /* reserve: already published (nothing to write);
	                      publish: another writer's value won, our slot was freed */
	KVC_ST_ABSENT = 2, /* lookup miss; delete of an absent key */
};

/* Namespace durability (docs/kvcache.md "Durability"). */
enum kvc_durability {
	KVC_DUR_SYNC = 0,  /* a put's pages are flushed on every replica before it returns */
	KVC_DUR_CACHE = 1, /* written (O_DIRECT) and committed without a device flush */
};
#define KVC_DUR_MAX KVC_DUR_CACHE

#define KVC_LOOKUP_TOUCH 1u   /* update recency of hits (batched, see meta_kvcache.h) */
#define KVC_STATS_RECLAIM 1u  /* first reclaim expired reservations */

struct kvc_ns {
	uint32_t page_size;
	uint64_t nslots;
	uint32_t nslabs;
	uint64_t slots_per_slab;
	uint32_t touch_ms;   /* recency granularity: a hit newer than this is not rewritten */
	uint32_t lease_ms;   /* default reservation lease */
	uint32_t ttl_ms;     /* default entry lifetime after its put; 0: none (appended field) */
	uint32_t durability; /* KVC_DUR_* (appended field; 0 in older records: sync) */
	uint64_t id;
	int64_t created;     /* ns since the epoch */
	char dir[KVC_DIR_MAX + 1];
	uint64_t slab_ino[KVC_SLABS_MAX];
};

struct kvc_stats {
	uint64_t used;      /* published entries */
	uint64_t reserved;  /* reservations not yet published or released */
	uint64_t hwm;       /* slots ever handed out since the last clear */
	uint64_t free;      /* slots in the free set */
	uint64_t evictions; /* entries evicted since create */
	uint64_t reclaimed; /* expired reservations reclaimed since create */
	uint64_t lost;      /* publishes that lost to an earlier one */
	uint64_t expired;   /* entries reclaimed after their TTL since create (was spare) */
	/* not in the fixed 8 x u64 block: an appended field */
	uint64_t evict_recent; /* evictions in the last KVC_RATE_WINDOW_S seconds (this one included) */
};
#define KVC_RATE_WINDOW_S 10

struct kvc_item {
	const uint8_t *key; /* borrowed */
	uint32_t key_len;
	int32_t status;
	uint64_t slot, version;
	uint32_t len, crc;
	uint64_t last_used; /* ms since the epoch */
};

struct kvc_msg {
	uint16_t type;
	const uint8_t *name; /* borrowed */
	uint32_t name_len;
	uint64_t ns_id, owner;
	uint32_t lease_ms, flags;
	uint32_t ttl_ms; /* PUBLISH: entry lifetime (0: the namespace's); appended field */
	/* RESERVE, DELETE, NS_CREATE, NS_DELETE: the call's token (appended
	 * field; 0: none). The client picks a new random one per call and
	 * sends it unchanged in every attempt of that call: a resent RESERVE
	 * whose earlier attempt committed gets the same slots back, a resent
	 * DELETE the same answers, a resent NS_CREATE the namespace it made,
	 * a resent NS_DELETE the namespace it deleted (meta_kvcache.h
	 * "Resends"). */
	uint64_t token;
	struct kvc_ns ns;
	struct kvc_stats stats;
	uint32_t n;
	struct kvc_item *items; /* n entries */
	int items_owned;        /* set by the decoder: kvc_msg_fini frees items */
};

int kvc_msg_encode(struct buf *b, const struct kvc_msg *m);
/* M is zeroed first; on success the caller calls kvc_msg_fini. */
int kvc_msg_decode(const void *p, size_t n, struct kvc_msg *m);
/* Frees what the decoder allocated. NULL-safe; idempotent. */
void kvc_msg_fini(struct kvc_msg *m);
/* "KVC_LOOKUP", ... for a type 250..259; NULL for others. */
const char *kvc_rpc_name(uint16_t type);

#endif
