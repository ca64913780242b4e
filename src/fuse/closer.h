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
 * Threads: every call is thread-safe. closer_add never waits for the
 * network; one background thread sends the batches. A batch that fails
 * (meta unreachable past the client's failover deadline) is logged and
 * dropped: the sessions then stay until meta prunes the mount, the same
 * as a synchronous close that failed.
 */
#ifndef CFS_FUSE_CLOSER_H
#define CFS_FUSE_CLOSER_H

#include <stdint.h>

#include "client/meta_client.h"

typedef struct closer closer;

/* A closer sending through META (borrowed: must outlive the closer).
 * WINDOW_MS >= 0: how long the first queued close may wait for others
 * to share its call. NULL when out of memory or no thread. */
closer *closer_new(meta_client *meta, int window_ms);
/* Queues the close of SESSION on INO: 1, or 0 when the queue is full
 * (the caller closes synchronously: back-pressure when meta is slow). */
int closer_add(closer *c, uint64_t ino, uint64_t session);
/* Sends every close queued before the call and waits until they were
 * answered (or failed). */
void closer_flush(closer *c);
/* Flushes, stops the thread and frees. NULL is a no-op. */
void closer_free(closer *c);

#endif
