/* etcd_engine.h - what an etcd-backed kv engine exposes beyond kv.h.
 *
 * The cluster manager elects its primary with etcd leases (a key put with
 * a lease under the cluster prefix, created only if absent, kept alive by
 * the primary; see etcd_client.h for leases and txns). It reaches the
 * engine's client and key prefix here instead of opening a second client.
 */
#ifndef CFS_KV_ETCD_ENGINE_H
#define CFS_KV_ETCD_ENGINE_H

#include <stddef.h>

#include "kv/etcd_client.h"
#include "kv/kv.h"

/* For an engine opened from an etcd:// URL: its client (thread-safe) and
 * the byte prefix every kv key is stored under ("/name/", not
 * NUL-terminated in general use: PREFIX_LEN bytes). Both are borrowed and
 * valid until kv_close(E). Returns 0, or -EINVAL when E is not an etcd
 * engine. Any thread. */
int kv_etcd_client(kv_engine *e, struct etcdc **cli, const char **prefix, size_t *prefix_len);

#endif
