/* mgmtd_store.h - mgmtd's state in the KV store, and the primary lease.
 *
 * Keys (all under "MGMT/"; ids big-endian so keys sort by id):
 *   MGMT/cluster              cluster record (written by init-cluster)
 *   MGMT/lease                primary lease
 *   MGMT/version              routing version
 *   MGMT/node/<be32 id>       node record       (routing.h record codec)
 *   MGMT/tgt/<be32 id>        target record
 *   MGMT/chain/<be32 id>      chain record
 *   MGMT/table/<be32 id><be32 version>  table record
 *   MGMT/admin/<be32 target>  "offline by an operator" marker
 * Every value is sealed with route_seal (magic, kind, format, CRC32C). The
 * records of mgmtd's own kinds (RECORD = the bytes inside the seal):
 *   lease    u64 holder, u64 term, u64 expiry (wall ms), blob addr
 *   cluster  blob cluster id, u64 created (wall ms)
 *   version  u64 routing version
 *   admin    u8 1
 * Chains are authoritative for membership and public states: on load each
 * target's chain id and public state are taken from the chain naming it, so
 * a crash between two txns of one batch cannot leave them disagreeing.
 *
 * Lease. Every mgmtd runs mgmtd_store_elect every lease/3: it takes the
 * lease when absent or expired (term + 1), extends it when it holds it,
 * and otherwise learns who does. mgmtd_store_commit re-reads the lease in
 * each txn it commits and aborts with -CFS_ENOT_PRIMARY unless it is still
 * held by (holder, term) and unexpired, so a deposed primary cannot write.
 * Times are wall-clock milliseconds: the mgmtds of one cluster must have
 * clocks that agree to well under a lease length.
 *
 * All functions block on KV I/O (not for event-loop threads) and are
 * thread-safe on distinct arguments.
 */
#ifndef CFS_MGMTD_MGMTD_STORE_H
#define CFS_MGMTD_MGMTD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "kv/kv.h"
#include "mgmtd/routing.h"

#define MGMTD_CLUSTER_ID_MAX 255

struct mgmtd_lease {
	uint64_t holder;               /* random id of the holding mgmtd process */
	uint64_t term;                 /* increases at every change of holder */
	uint64_t expiry_ms;            /* wall clock */
	char addr[ROUTE_ADDR_MAX + 1]; /* holder's RPC address */
};

/* The mgmtd state that lives beside the routing info. */
struct mgmtd_state {
	struct route_info ri;
	uint32_t *admin_off; /* owned, sorted: targets an operator set offline */
	size_t n_admin_off;
	bool initialised; /* the cluster record exists */
};

void mgmtd_state_init(struct mgmtd_state *s);
void mgmtd_state_fini(struct mgmtd_state *s);
/* Deep copy of SRC into DST (initialised here). Aborts on out-of-memory. */
void mgmtd_state_copy(struct mgmtd_state *dst, const struct mgmtd_state *src);
bool mgmtd_state_admin_off(const struct mgmtd_state *s, uint32_t target_id);
/* Adds or removes TARGET_ID from the admin-offline set. 1 if it changed. */
int mgmtd_state_set_admin_off(struct mgmtd_state *s, uint32_t target_id, bool off);

/* A list of writes built from a state change; committed by
 * mgmtd_store_commit in txns of at most MGMTD_BATCH_PER_TXN writes. */
struct mgmtd_batch;
#define MGMTD_BATCH_PER_TXN (KV_MAX_WRITES - 4)

struct mgmtd_batch *mgmtd_batch_new(void);
void mgmtd_batch_free(struct mgmtd_batch *b);
size_t mgmtd_batch_len(const struct mgmtd_batch *b);
/* Appends the records of NEW that differ from OLD (nodes, targets, chains,
 * tables, admin markers, the routing version and the cluster record when
 * NEW is initialised and OLD is not). Records are never deleted. The
 * routing version is written last, so it is in the final txn. 0 or
 * -ENOMEM. */
int mgmtd_batch_diff(struct mgmtd_batch *b, const struct mgmtd_state *old_s,
                     const struct mgmtd_state *new_s, const char *cluster_id);

/* Commits B in order, each txn first checking that (HOLDER, TERM) holds an
 * unexpired lease at wall time NOW_MS (mgmtd_store_commit reads the clock
 * itself when now_ms is 0). 0, -CFS_ENOT_PRIMARY (lease lost: nothing more
 * is written, earlier txns of B stay), or a KV error after kv_run retries. */
int mgmtd_store_commit(kv_engine *e, uint64_t holder, uint64_t term, uint64_t now_ms,
                       const struct mgmtd_batch *b);

/* Loads the whole state into OUT (initialised here; fini it on success).
 * 0, -CFS_ECORRUPT (a value fails its seal or decode, or the records do
 * not agree: message in ERR), -EINVAL (the cluster record names another
 * cluster id than CLUSTER_ID), or a KV error. On error OUT is empty. */
int mgmtd_store_load(kv_engine *e, const char *cluster_id, struct mgmtd_state *out, char *err,
                     size_t errlen);

/* One election step at wall time NOW_MS (0: read the clock). *OUT gets the
 * lease as it is after the step. Returns 1 when HOLDER is primary (lease
 * taken or extended to NOW_MS + LEASE_MS), 0 when another holder's lease
 * is valid, or a KV error / -CFS_ECORRUPT (the lease value is unreadable:
 * it is then treated as expired and overwritten, so this is only returned
 * when the overwrite failed). */
int mgmtd_store_elect(kv_engine *e, uint64_t holder, const char *addr, uint32_t lease_ms,
                      uint64_t now_ms, struct mgmtd_lease *out);
/* Expires the lease if HOLDER holds it (clean shutdown: a standby takes
 * over at once; the term is kept so terms only grow). 0 or a KV error. */
int mgmtd_store_release(kv_engine *e, uint64_t holder);

/* Lease value codec (exposed for tests and the fuzz target). */
int mgmtd_lease_encode(const struct mgmtd_lease *l, struct buf *out);
int mgmtd_lease_decode(const uint8_t *p, size_t n, struct mgmtd_lease *out);

#endif
