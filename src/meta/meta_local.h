/* meta_local.h - a metadata instance inside a client process (the mount):
 * meta operations answered in the calling thread on the shared LMDB store,
 * with no RPC hop.
 *
 * Meta is stateless over its KV store and LMDB lets several PROCESSES
 * share one environment (kv_lmdb.c: the writer lock is process-shared,
 * commit validation sees every process's commits), so a mount on the host
 * that holds the cluster's meta store can open the same environment, with
 * the same URL (sync mode, map_size, writemap) as the meta service, and
 * run the operations that touch nothing but the KV itself: the read-only
 * ones and the namespace mutations (meta_dispatch.h), directory listings
 * and versions, CLOSE_MANY, inline-data reads, writes and conversions, and the
 * KV-only forms of open (no truncate), close (length known), setattr (no
 * size change) and sync (no storage query): meta_request_kv_only. Each
 * goes through meta_dispatch, the code path of the service, so replies
 * and errors are the service's byte for byte. Everything else (the other
 * forms of those four, fsync, statfs, locks, KVCache, GC, session
 * pruning, idempotency pruning) stays with the meta service process.
 *
 * What is per process and how this instance handles it:
 * - inode ids: its own allocator range, as any instance (meta.h);
 * - idempotency records: none for a call run here (meta_local.c "No
 *   idempotency records": it has no lost reply, and it goes to the
 *   service, with its (client, seq), only when nothing of it committed);
 *   the service records the calls it answers, those that failed over
 *   from here included, as for any client;
 * - GC: never runs here; after a local unlink or rename the client sends
 *   the service a GC_KICK (meta_client.c "GC kicks", asynchronous), which
 *   wakes its GC as its own unlink does; a kick lost (service down, old
 *   meta) leaves the file to the service's next background pass
 *   (bg_interval_ms);
 * - durability: commits are in the page cache when they return (sync=window)
 *   or on disk (sync=full); one engine per store syncs in the background
 *   (kv_lmdb.c "one background syncer": the service while it runs, this
 *   engine once it is gone), and the service's kv_flush (META_FSYNC) syncs
 *   every process's commits (kv_lmdb.c window_sync reads LMDB's last txn
 *   id);
 * - compaction: the service's; this engine opens with compact=0 and
 *   releases the store while the service compacts it (meta_local.c
 *   "Compaction hand-off"), calls going over RPC meanwhile;
 * - a chain table missing from this process's routing snapshot: the call
 *   goes to the service (META_LOCAL_PASS; nothing was committed);
 * - a process killed with the writer lock or reader slots: LMDB's robust
 *   mutex, and the stale-reader check each engine's commit leader runs
 *   at most once a second (kv_lmdb.c batch_begin); a dead reader's slot
 *   would otherwise keep every commit from reusing freed pages.
 *
 * Threads: meta_local_call from any number of threads at once.
 */
#ifndef CFS_META_META_LOCAL_H
#define CFS_META_META_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "meta/meta_proto.h"

struct mgmtd_client;
struct meta_local;

struct meta_local_opts {
	const char *kv_url;           /* the meta service's KV URL, exactly; lmdb only */
	struct mgmtd_client *mgmtd;   /* chain tables for new files; borrowed, outlives */
	uint32_t idata_max;           /* the service's inline-data threshold (--inline-max) */
};

/* Opens the store and checks that meta formatted it (the root exists);
 * never creates one. 0, or -EINVAL (not lmdb, bad URL) / -ENOENT (no
 * data.mdb at the path, or no root: meta has not run) / the kv_open
 * error, each with a message in ERR. */
int meta_local_open(const struct meta_local_opts *o, struct meta_local **out, char *err,
		    size_t errlen);

/* Returned by meta_local_call for a TYPE it does not run here. */
#define META_LOCAL_PASS 1

/* Runs the encoded meta request of TYPE (REQ, LEN bytes) in the calling
 * thread; L is a struct meta_local (void * to fit meta_client's hook).
 * 0: RESP (reset first) holds the encoded reply payload; <0: the error,
 * with the reply text in ERR (as meta_dispatch); META_LOCAL_PASS: TYPE is
 * not one this instance runs (send it to the service). */
int meta_local_call(void *l, uint16_t type, const uint8_t *req, size_t len, struct buf *resp,
		    char *err, size_t errlen);

/* Direct calls. meta_local_call without the bytes: the request M and
 * the reply R (R->type M's type, caller memory set as for
 * meta_rpc_resp_decode) as structs, for the types whose reply borrows
 * nothing from its bytes (meta_rpc_resp_copyable: LOOKUP, GETATTR,
 * CREATE_DIR, UNLINK_DIR, MKDIR, ...). The same dispatch, operation code
 * and outcomes as meta_local_call (meta_dispatch_in_process_req): what
 * a caller gets in R is what it would decode from meta_local_call's
 * reply, and META_LOCAL_PASS or a failover code again mean nothing
 * committed ("No idempotency records" holds unchanged). A type not
 * taken here: META_LOCAL_PASS before anything runs (the caller then
 * encodes it). Any thread. */
int meta_local_call_req(void *l, const struct meta_rpc_req *m, struct meta_rpc_resp *r,
			char *err, size_t errlen);

/* Calls answered here since open (not those passed to the service). */
uint64_t meta_local_calls(const struct meta_local *l);

/* Times the store was released to the service's compaction since open. */
uint64_t meta_local_handoffs(const struct meta_local *l);

/* No call may be in progress. NULL-safe. */
void meta_local_close(struct meta_local *l);

#endif
