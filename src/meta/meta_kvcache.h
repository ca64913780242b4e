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
 *   KVCR ns slot                    reservation: version, owner, expiry, len, token, idx, group
 *   KVCE ns expiry(8) slot(8)       reservation expiry index; value: token(8) group(4) or empty
 *   KVCO ns token(8) group(8)       token record of one RESERVE txn (group: its first key's
 *                                   index): (idx, slot) of each reservation it holds;
 *                                   goes with the last of them
 *   KVCD ns token(8) first(8)       result record of one DELETE txn (first: its first
 *                                   key's index): expiry, each key's answer
 *   KVCG ns expiry(8) token(8) first(8)  result records by expiry (dropped after 120 s)
 *   KVCC ns kind(1) shard(1)        counters (kv_atomic_add, sharded like DSTA)
 *   KVCT ns expiry(8) slot(8)       entries with a TTL, by expiry; value: the key
 *   KVCW ns second(8)               evictions in that second (kv_atomic_add)
 *   KVCZ 0 token(8) name            tombstone of one NS_DELETE: expiry, the namespace it deleted
 *   KVCY 0 expiry(8) token(8) name  tombstones by expiry (dropped after 120 s)
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
 * records it with the key's index in the batch and its txn's group, and
 * one token record per txn (group) lists the group's reservations
 * (index, slot). A RESERVE that finds its group's token record gets back
 * each listed slot whose reservation still names the put (lease
 * renewed) instead of taking another. Every end of a reservation
 * (publish, release, reclaim) takes its slot out of the record in the
 * same txn, and the last one clears it; a txn ending several of one
 * record's reservations updates it once. So a put of 64 keys writes 8
 * token records and about 14 updates or clears (publish txns of 10 keys
 * end one group and part of the next), where it was 128 writes.
 * PUBLISH and RELEASE are idempotent by (slot, version): a resent
 * publish of an applied one reports OK, a resent release finds nothing
 * to drop. A DELETE with a token keeps each txn's answers in a result
 * record for 120 s (dropped by later deletes, two per txn, and by
 * CLEAR): a resend answers the same (the key the first attempt deleted
 * is OK, not absent) and deletes nothing put since. An NS_CREATE keeps
 * its token in the namespace record: a resend with the same token and
 * parameters answers the namespace; any other create of the name is
 * -EEXIST. An NS_DELETE with a token leaves a tombstone (name, token)
 * for 120 s (dropped by later namespace deletes, two per call): a resend
 * answers the namespace the first attempt deleted, not -ENOENT, and
 * deletes nothing (a namespace of the name created since stays). It is
 * not the namespace: a create of the name works at once.
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
