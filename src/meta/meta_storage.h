/* meta_storage.h - the storage service as the metadata service uses it:
 * a struct meta_storage (meta.h) backed by storage chains through
 * storage_client, with capacity from mgmtd routing.
 *
 * Ownership: meta_chains_new copies its options except MGMTD (borrowed,
 * must outlive the object); the struct meta_storage it fills borrows the
 * object, so free it only after the meta ctx stops calling it.
 * Errors: 0 or -errno / -CFS_E*. Threads: every storage function may be
 * called from any number of threads at once (storage_client is).
 */
#ifndef CFS_META_META_STORAGE_H
#define CFS_META_META_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "meta/meta.h"
#include "mgmtd/mgmtd_client.h"

struct meta_chains;

struct meta_chains_opts {
	const char *cluster_id;
	const uint8_t *secret;           /* >= 16 bytes; copied */
	size_t secret_len;
	const char *const *mgmtd_addrs;  /* "ip:port"; copied */
	size_t n_mgmtd;
	struct mgmtd_client *mgmtd;      /* routing for capacity; borrowed */
	uint32_t timeout_ms;             /* per storage RPC [5000] */
	uint32_t retry_budget_ms;        /* per storage call [15000] */
};

/* 0, or -EINVAL / -errno with a message in ERR. */
int meta_chains_new(const struct meta_chains_opts *o, struct meta_chains **out, char *err,
		    size_t errlen);
/* NULL-safe. No storage call may be in progress. */
void meta_chains_free(struct meta_chains *c);
/* The meta.h storage interface over C. */
struct meta_storage meta_chains_storage(struct meta_chains *c);

/* No storage service: every storage call fails with -EOPNOTSUPP (not
 * -CFS_EUNAVAIL, which clients would take as "try another instance"). */
struct meta_storage meta_storage_none(void);

/* A meta_chain_view table function (layout.h) over the latest routing of
 * the mgmtd_client MGMTD: the chains of TABLE_ID, or -ENOENT (unknown
 * table, no routing yet). Any thread. */
int meta_routing_table(void *mgmtd, uint32_t table_id, uint32_t *chains, uint32_t cap);

#endif
