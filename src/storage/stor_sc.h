/* stor_sc.h - the storage service's side of short-circuit reads
 * (docs/rpc.md "Short-circuit reads"): a same-host client maps a chunk
 * once (SC_MAP) and then reads the chunk's block file itself, checking a
 * slot word of a shared table that this service changes before anything
 * could make the mapped bytes wrong.
 *
 * The table is a memfd the client registered on its connection
 * (SHM_REG, STO_SC_TABLE_BYTES). The service only ever increments slot
 * words (atomically) and writes the lease word; it never takes a
 * decision from what the table holds, so a client scribbling on it only
 * spoils its own reads.
 *
 * Threads: stor_sc_handle_map on the request's loop thread; the hooks it
 * installs run on engine and CRAQ threads under their locks; a ticker
 * thread refreshes leases. */
#ifndef CFS_STORAGE_STOR_SC_H
#define CFS_STORAGE_STOR_SC_H

#include <stdbool.h>

#include "net/rpc.h"

struct storage_service;
struct stor_sc;

/* Installs the revocation hooks on every target of S (engine chunk locks
 * and CRAQ chunk locks). NULL only on allocation failure (then the
 * handler answers -EOPNOTSUPP). After the targets are open. */
struct stor_sc *stor_sc_new(struct storage_service *s);
/* Removes the hooks and stops the ticker; after the RPC server is freed
 * (connections gone), before the targets close. NULL-safe. */
void stor_sc_free(struct stor_sc *x);
/* Waits until every short-circuit lease a previous service gave on the
 * target in DIR has run out (the clock past the lease recorded in DIR:
 * at most the lease, 250 ms; nothing to wait for when none is recorded
 * or it is past). Call before the target's engine opens: no block file
 * may change while a client could still trust a read of the old
 * service's mappings (stor_sc.c "A SUCCESSOR"). */
void stor_sc_wait_predecessor(const char *dir);
/* CFS_TEST_SC_LEGACY=1 (test hook): the service behaves as one before
 * 2026-12-06: no lease records, no STO_SC_RECORDED in its tables, no
 * wait for a predecessor (the client's pidfd fallback: test_short_read
 * kill9_legacy). */
bool stor_sc_test_legacy(void);
/* Answers SC_MAP (consumes REQ). */
void stor_sc_handle_map(struct storage_service *s, struct rpc_req *req);
/* Answers SC_MAP_MANY (consumes REQ): each entry as SC_MAP would. */
void stor_sc_handle_map_many(struct storage_service *s, struct rpc_req *req);
/* Revokes every mapping of every table now (a target fenced itself).
 * Any thread not holding an engine or CRAQ lock. NULL-safe. */
void stor_sc_revoke_all(struct stor_sc *x);

struct stor_sc_stats {
	uint64_t maps;     /* mappings handed out */
	uint64_t revokes;  /* slot words bumped */
	uint64_t tables;   /* tables alive */
	uint64_t evictions; /* mappings revoked to free a slot for another chunk */
};
void stor_sc_get_stats(struct stor_sc *x, struct stor_sc_stats *out);

#endif
