/* meta_kvcache.h - the KVCache index: key -> page slot of a namespace's
 * slab files, kept in the cluster's KV store behind the meta service
 * (messages 250..259, meta_kvc_proto.h). docs/kvcache.md has the design.
 *
 * Keys (prefix 4 ASCII bytes, integers big-endian; ns = namespace id):
 *   KVCN name                       namespace id (8 bytes LE)
 *   KVCI ns                         namespace record (struct kvc_ns)
 *   KVCK ns key                     entry: slot, version, len, crc, last_used
 *   KVCL ns last_used(8) slot(8)    LRU index; value: the key
 *   KVCF ns slot                    free-slot set (empty value)
 *   KVCH ns shard(1)                never-used slots: shard h hands out h + k*8, k >= this
 *   KVCR ns slot                    reservation: version, owner, expiry, len, token, idx
 *   KVCE ns expiry(8) slot(8)       reservation expiry index; value: token(8) idx(4) or empty
 *   KVCO ns token(8) idx(8)         token record: the put's reservation of its key idx:
 *                                   slot(8) version(8) (LE); goes with the reservation
 *   KVCC ns kind(1) shard(1)        counters (kv_atomic_add, sharded like DSTA)
 *   KVCT ns expiry(8) slot(8)       entries with a TTL, by expiry; value: the key
 *   KVCW ns second(8)               evictions in that second (kv_atomic_add)
 * Records carry a magic and a CRC32C; a bad one is -CFS_ECORRUPT.
 *
 * Put = RESERVE (a slot per key, with an owner and a lease) + the client's
 * page write + PUBLISH (entry and LRU written, reservation dropped, in one
 * txn per key group). The first publish of a key wins; a later one finds
 * the entry and frees its own slot (status KVC_ST_EXISTS): keys are
 * content hashes, so either value is right. A reservation not published
 * within its lease is reclaimed by the next RESERVE or STATS(reclaim),
 * so a writer killed between page write and publish leaks nothing. A
 * RESERVE that fails part way drops what its earlier txns reserved
 * before it returns the error (the caller never learns those slots).
 *
 * Resends: meta_client sends a call again when an attempt times out, and
 * the service still runs the attempt it gave up on, so a RESERVE may run
 * twice. Without a token each run took its own slots and the slots of
 * the run whose reply was dropped stayed reserved until their lease
 * ended (with a 30 s lease two such puts could hold a small namespace).
 * A RESERVE carries the put's token (kvc_msg.token): each reservation
 * records it with the key's index in the batch, a token record points
 * from (token, index) to the reservation, and a RESERVE that finds one
 * still reserved returns that slot and version again (lease renewed)
 * instead of taking another. Its token record goes in the same txn as
 * the reservation (publish, release, reclaim). PUBLISH and RELEASE are
 * idempotent by (slot, version): a resent publish of an applied one
 * reports OK, a resent release finds nothing to drop.
 *
 * TTL: an entry published with a TTL (the PUBLISH's ttl_ms, else the
 * namespace's) is a miss once its expiry passes; its slot is taken back
 * by the next RESERVE (before the free set) or STATS(reclaim), and a
 * publish of the same key replaces it.
 *
 * Readers: LOOKUP (read-only) gives slot, version, len and crc; the client
 * reads the page and then checks with a second LOOKUP that the key still
 * has that version (a slot is reused only after its entry is gone, and
 * versions are never reused), and checks the crc of the bytes: a failed
 * check is a miss, never wrong bytes. Recency (last_used) is rewritten
 * only for hits older than the namespace's touch_ms, in one write txn per
 * 16 hits after the lookup (best effort), so a hot key costs one durable
 * write per touch_ms, not one per get.
 *
 * Every batch is split into txns of a few keys (the KV limits, kv.h); each
 * key's step is atomic, a batch is not. Threads: thread-safe (no state).
 */
#ifndef CFS_META_META_KVCACHE_H
#define CFS_META_META_KVCACHE_H

#include <stddef.h>

#include "kv/kv.h"
#include "meta/meta_kvc_proto.h"

/* Runs request REQ (decoded) against the index in KV and fills RESP
 * (RESP->items allocated when the type returns items; kvc_msg_fini frees
 * them). Returns 0 (per-item outcomes in RESP->items[i].status) or a
 * negative code for the whole call: -ENOENT (unknown namespace), -EEXIST
 * (create of an existing name), -EINVAL (bad name, page size, capacity,
 * key, value length, batch size; the reason in ERR), -ENOSPC (reserve:
 * every slot is reserved by writers), or a KV error after retries. */
int meta_kvc_serve(kv_engine *kv, const struct kvc_msg *req, struct kvc_msg *resp, char *err,
		   size_t errlen);

#endif
