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
#include "storage_client/storage_client.h"

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

/* The storage exactly-once key of a cut (KIND 0: STO_REMOVE, 1:
 * STO_TRUNCATE) that meta makes for client request KEY (meta_attr.c
 * "Late cuts"), into *OUT; NULL (the storage client's own key) when KEY
 * is NULL or untracked. The client's id and the request's seq, on a
 * channel of that request and kind alone (bit 63 set: no storage
 * client's own channel): every run of the request, on any instance,
 * sends its cuts under one key, so the head answers a late one from its
 * cache; and no two requests share a channel, so two truncates of one
 * inode that a client has in flight at once (two opens with O_TRUNC: the
 * kernel does not serialise them) are both applied in whatever order
 * they reach the head, where a channel per inode refused the one with
 * the lower seq (-CFS_ESUPERSEDED, EIO at the mount). A request cuts one
 * inode, once per chain and kind. Pure; any thread. */
static inline const struct storage_op_key *
meta_cut_storage_key(const struct meta_cut_key *key, uint64_t kind, struct storage_op_key *out)
{
	if (!key || !key->seq)
		return NULL;
	*out = (struct storage_op_key){.client = key->client,
	                               .channel = STORAGE_OP_KEY_CHANNEL | (kind & 1) << 62 |
	                                          (key->seq & ((1ull << 62) - 1)),
	                               .seq = key->seq};
	return out;
}

/* No storage service: every storage call fails with -EOPNOTSUPP (not
 * -CFS_EUNAVAIL, which clients would take as "try another instance"). */
struct meta_storage meta_storage_none(void);

/* A meta_chain_view table function (layout.h) over the latest routing of
 * the mgmtd_client MGMTD: the chains of TABLE_ID, or -ENOENT (unknown
 * table, no routing yet). Any thread. */
int meta_routing_table(void *mgmtd, uint32_t table_id, uint32_t *chains, uint32_t cap);

#endif
