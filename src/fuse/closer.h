/* closer.h - the mount's deferred write-session closes.
 *
 * WHY. Every create through the mount opens a write session in the create
 * txn (meta_file.c "Sessions": it keeps the inode out of GC while the file
 * is open and lets meta settle the length from storage if the mount dies).
 * Ending it was a second meta round trip and a second txn per file, paid at
 * release even for a file closed without a byte written: a third of the
 * mount's create rate (issue 13). A session whose length meta already has
 * (nothing written, or written and reported at flush) needs nothing from
 * the close but the key's removal, and nobody waits for that: the kernel
 * sends release after close(2) returned. So such closes queue here and go
 * out together, up to META_CLOSE_MANY_MAX per CLOSE_MANY call (one txn).
 *
 * WHAT A LATE CLOSE CHANGES. Only how long the session key lives: at most
 * the window (plus a meta round trip) after the release. Meanwhile an
 * unlinked file waits in the GC queue (GC skips files with sessions), as
 * it does for any open file; if the mount dies first, meta prunes its
 * sessions as it prunes those of files it held open. Lengths, locks and
 * inline data do not wait: the caller sends a length not yet reported and
 * drops locks itself (fuse_fs.c file_drop), and queues only the rest.
 *
 * A CLOSE THAT FAILED (meta unreachable past the client's failover
 * deadline, a length that needs storage while storage does not answer) is
 * retried here in the background: a batch's sessions and the synchronous
 * closes the caller hands over (closer_retry, with the length to report),
 * after 1 s, then doubling to 30 s, CLOSER_RETRY_TRIES times in all
 * (about 4 min), CLOSER_RETRY_MAX at once. While meta keeps failing,
 * one attempt is made per round: the first that fails puts the others
 * due off until its own next attempt, uncounted, so a meta outage costs
 * one failover deadline per round on the closer's thread, not one per
 * waiting close, and new batches are not held up behind them. Until one
 * lands the file's length may be short (a writer's report rides on its
 * close) and an unlinked file stays out of GC; the mount living on, meta would not
 * prune them. Past the bound (or the capacity) the close is logged and
 * dropped: meta prunes the sessions once the mount is gone. closer_free
 * tries each one waiting once more, due or not, until one fails; the
 * rest are dropped the same way. A retried close is idempotent (a session key cleared twice, a
 * length only raised).
 *
 * Threads: every call is thread-safe. closer_add and closer_retry never
 * wait for the network; one background thread sends the batches and the
 * retries.
 */
#ifndef CFS_FUSE_CLOSER_H
#define CFS_FUSE_CLOSER_H

#include <stdint.h>

#include "client/meta_client.h"

typedef struct closer closer;

#define CLOSER_RETRY_TRIES 10   /* attempts of a failed close, the first one's included */
#define CLOSER_RETRY_MAX   1024 /* failed closes waiting for a retry at once */

/* A closer sending through META (borrowed: must outlive the closer).
 * WINDOW_MS >= 0: how long the first queued close may wait for others
 * to share its call. NULL when out of memory or no thread. */
closer *closer_new(meta_client *meta, int window_ms);

/* What a closer sends through (tests: a meta that fails on purpose).
 * close_many as meta_client_close_many; close_known as
 * meta_client_close_known with root credentials. Both 0 or <0, called
 * from the closer's thread only. */
struct closer_ops {
	int (*close_many)(void *arg, const uint64_t *pairs, int n);
	int (*close_known)(void *arg, uint64_t ino, uint64_t session,
	                   const struct meta_length *len);
	void *arg;
};
/* closer_new over OPS (copied), with the first retry RETRY_MS after a
 * failure (the delay doubles up to 30x it). */
closer *closer_new_ops(const struct closer_ops *ops, int window_ms, int retry_ms);
/* Queues the close of SESSION on INO: 1, or 0 when the queue is full
 * (the caller closes synchronously: back-pressure when meta is slow). */
int closer_add(closer *c, uint64_t ino, uint64_t session);
/* Hands over a synchronous close of SESSION on INO that failed with ERR,
 * with the length LEN (copied; NULL: nothing to report) it was to
 * report: retried in the background as above. 1, or 0 when
 * CLOSER_RETRY_MAX closes wait already or the closer stops (dropped and
 * logged: meta prunes the session when the mount goes). */
int closer_retry(closer *c, uint64_t ino, uint64_t session, const struct meta_length *len, int err);
/* Closes waiting for a retry now (tests). */
int closer_retries_pending(closer *c);
/* Sends every close queued before the call and waits until they were
 * answered (or failed). */
void closer_flush(closer *c);
/* Flushes, stops the thread and frees; closes still waiting for a retry
 * are tried once more until one fails, the rest dropped (logged): the
 * call may wait for meta that long. NULL is a no-op. */
void closer_free(closer *c);

#endif
