/* meta_lock.h - advisory file locks held in the KV store, so they hold
 * across mounts on different hosts: POSIX record locks (fcntl F_SETLK /
 * F_SETLKW / F_GETLK), OFD locks (the same kind, owned by an open file
 * description instead of a process) and flock(2).
 *
 * Model. Every lock belongs to a holder = (client, owner): client is the
 * meta client id of the mount (its mgmtd node id, meta.h
 * META_CLIENT_NODE_MAX), owner the kernel's lock owner id on that mount
 * (FUSE lock_owner: a process's files table for POSIX locks, the open file
 * description for OFD and flock locks). Two kinds live side by side and
 * never conflict with each other, as on Linux: POSIX (byte ranges, OFD
 * included) and FLOCK (whole file). Within a kind, locks of different
 * holders conflict when their ranges overlap and one of them is a write
 * (exclusive) lock; a holder never conflicts with itself.
 *
 * Semantics match Linux's fs/locks.c:
 *   - POSIX set: the holder's locks over the new range are replaced
 *     (split where the new range cuts them; upgrade and downgrade are
 *     atomic), and the holder's locks of the same type that overlap or
 *     touch the new one merge into one. Unlock may split a lock in two.
 *   - FLOCK set: one lock per holder; converting it first drops the old
 *     lock, so a conversion that fails (conflict) leaves the holder with
 *     none, exactly as flock_lock_inode does.
 *   - Test (F_GETLK): the first conflicting lock in table order (holders in
 *     the order they first locked the file, each holder's locks by start),
 *     which is the order Linux keeps its per-inode list in.
 * Ranges are [start, end] inclusive; end META_LOCK_EOF means "to the end
 * of the file, whatever it becomes".
 *
 * Storage. All locks of one inode are one record under LOCK + ino (so a
 * lock operation is one KV transaction that reads and writes one key: one
 * read conflict, within every backend's limits). At most META_LOCK_MAX
 * locks per inode (-ENOLCK beyond, as the kernel's lock limit would).
 *
 * Release. A holder's locks go when it unlocks, when its mount closes the
 * file (meta_lock_release with the owner FUSE names in flush / release),
 * and when its client dies: meta_lock_prune drops every lock of a client
 * the caller's liveness test calls dead, the same test that drops write
 * sessions (meta_session_prune). Waiting (F_SETLKW, flock without
 * LOCK_NB) is the client's: it retries meta_lock_set with bounded backoff.
 *
 * Errors: 0 or <0 as meta.h (KV errors after retries); -EAGAIN for a
 * conflict; -EINVAL for a bad kind, type or range; -ENOLCK for a full table;
 * -CFS_ECORRUPT for a record that fails its checks.
 * Threads: thread-safe; the calls block on the KV store.
 */
#ifndef CFS_META_META_LOCK_H
#define CFS_META_META_LOCK_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "meta/meta.h"

#define META_LOCK_EOF UINT64_MAX
#define META_LOCK_MAX 1024 /* locks per inode */

enum meta_lock_kind { META_LOCK_POSIX = 1, META_LOCK_FLOCK = 2 };
enum meta_lock_type { META_LOCK_UN = 0, META_LOCK_RD = 1, META_LOCK_WR = 2 };
/* Kind masks for meta_lock_release. */
#define META_LOCK_KIND_BIT(k) (1u << (k))
#define META_LOCK_ALL_KINDS (META_LOCK_KIND_BIT(META_LOCK_POSIX) | META_LOCK_KIND_BIT(META_LOCK_FLOCK))

struct meta_lock {
	uint64_t client, owner; /* holder */
	uint32_t pid;           /* holder's process (reported by F_GETLK) */
	uint8_t kind;           /* enum meta_lock_kind */
	uint8_t type;           /* enum meta_lock_type */
	uint64_t start, end;    /* inclusive; end META_LOCK_EOF: to the end */
};

/* ---- the lock table of one inode (pure functions, no KV) ---- */

struct meta_lock_table {
	struct meta_lock *v; /* owned; in table order (above) */
	size_t n, cap;
};

void meta_lock_table_free(struct meta_lock_table *t);
/* 1 and *out (may be NULL) when L conflicts with a lock of T, else 0. */
int meta_lock_table_test(const struct meta_lock_table *t, const struct meta_lock *l,
			 struct meta_lock *out);
/* Applies L (type META_LOCK_UN: unlock its range / the flock) for L's
 * holder. -EAGAIN (and *conflict, may be NULL) when another holder's lock
 * conflicts; -ENOLCK past META_LOCK_MAX; -ENOMEM; -EINVAL. On -EAGAIN the
 * table is unchanged, except a flock conversion (see above). */
int meta_lock_table_apply(struct meta_lock_table *t, const struct meta_lock *l,
			  struct meta_lock *conflict);
/* Removes the locks of kinds KINDS (mask) held by CLIENT with OWNER (any
 * owner when ANY_OWNER). Returns the number removed. */
size_t meta_lock_table_drop(struct meta_lock_table *t, uint64_t client, uint64_t owner,
			    int any_owner, unsigned kinds);
/* Record codec ("CFSL" record, schema.h framing): encode replaces B's
 * contents (0 or -ENOMEM); decode fills T (freed first) with a valid
 * table, 0 or -CFS_ECORRUPT / -ENOMEM. */
int meta_lock_encode(const struct meta_lock_table *t, struct buf *b);
int meta_lock_decode(const void *p, size_t n, struct meta_lock_table *t);
/* 0 when L is a well-formed request (kind, type, start <= end), else
 * -EINVAL. Inline: the RPC codecs (no KV) use it too. */
static inline int meta_lock_check(const struct meta_lock *l)
{
	if (l->kind != META_LOCK_POSIX && l->kind != META_LOCK_FLOCK)
		return -EINVAL;
	if (l->type > META_LOCK_WR || l->start > l->end)
		return -EINVAL;
	return 0;
}

/* ---- operations (one KV transaction each) ---- */

/* Sets or clears L on INO for holder (L->client, L->owner): -EAGAIN with
 * *conflict (may be NULL) on a conflict. */
int meta_lock_set(meta_ctx *m, uint64_t ino, const struct meta_lock *l,
		  struct meta_lock *conflict);
/* F_GETLK: 1 and *out when a lock of another holder conflicts with L, 0
 * when none does (read-only). */
int meta_lock_get(meta_ctx *m, uint64_t ino, const struct meta_lock *l, struct meta_lock *out);
/* Drops the locks of (CLIENT, OWNER) of kinds KINDS on INO (owner 0 with
 * any_owner: all of CLIENT's). Returns the number dropped. */
int meta_lock_release(meta_ctx *m, uint64_t ino, uint64_t client, uint64_t owner,
		      int any_owner, unsigned kinds);
/* Copies up to CAP locks of INO into OUT in table order; returns the total. */
int meta_lock_list(meta_ctx *m, uint64_t ino, struct meta_lock *out, size_t cap);
/* Drops every lock whose client IS_DEAD calls dead (meta.h). Returns the
 * number dropped. */
int meta_lock_prune(meta_ctx *m, meta_client_dead_fn is_dead, void *arg);

#endif
