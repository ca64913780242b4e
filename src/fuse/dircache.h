/* dircache.h - keeps the kernel's cached names coherent with other
 * clients: the mount tracks every name it lets the kernel cache (positive
 * and negative entries) per directory, polls meta for the directories'
 * entry-change counts (META_RPC_DIRVER, meta_dir_versions) every poll_ms,
 * and when a count moved by more than this mount's own changes, tells the
 * kernel every tracked name of that directory has expired (an inval_entry
 * notification with FUSE_EXPIRE_ONLY: the next use looks the name up again;
 * dropping it instead would unhash a directory a process stands in and
 * fail its getcwd; kernels without the flag get a plain drop). So the kernel may keep names for
 * long (entry and negative timeouts of many seconds) while a change made
 * through another mount reaches this one within one poll interval plus a
 * round trip.
 *
 * PROTOCOL. A handler that will hand the kernel an entry of PARENT calls
 * dircache_begin(PARENT) before the meta call that reads it, and
 * dircache_note(PARENT, NAME, gen) after: the name is then tracked, and
 * note returns 0 when PARENT was invalidated in between (the read may
 * predate a change the poll already acted on): the entry must go to the
 * kernel uncached (timeout 0). A handler whose meta call changed PARENT's
 * names exactly once (create with O_EXCL, mkdir, mknod, symlink, link,
 * unlink, rmdir) runs between dircache_own_begin and dircache_own_end
 * (CHANGED: it succeeded), so the poll does not take the mount's own
 * change for a foreign one. Anything else (rename, a create that may have
 * opened an existing file) counts as foreign, which only costs an
 * invalidation. A poll holds off own calls while its read is in flight
 * (a writer-preferring rwlock), so each own call is counted either before
 * the poll's snapshot and committed before its read, or after both.
 *
 * Failure: when polls fail for longer than a second, every tracked name is
 * invalidated at once and dircache_healthy() is 0 until a poll succeeds
 * (the mount then hands out short timeouts: fuse_fs.c).
 *
 * Threads: all calls are thread-safe. The kernel is told by a notifier
 * thread of the dircache's own, never by a caller: a notification waits
 * for the directory's lock, which the caller of a pending request of this
 * mount holds (dircache.c "THE NOTIFIER"). dircache_sync runs one poll in
 * the caller's thread (a granted lock: every change committed before the
 * grant is found and its names queued for the kernel before it returns;
 * the kernel drops them right after, without the caller waiting, so a
 * FUSE worker may call it from any handler).
 */
#ifndef CFS_FUSE_DIRCACHE_H
#define CFS_FUSE_DIRCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "client/meta_client.h"

struct fuse_session;
typedef struct dircache dircache;

/* Starts the poll thread. MC and SE are borrowed and must outlive the
 * dircache. TTL_NS: the longest entry or negative timeout handed out (a
 * directory unused for longer is forgotten without invalidation).
 * 0 or -errno. */
int dircache_new(meta_client *mc, struct fuse_session *se, uint32_t poll_ms, uint64_t ttl_ns,
                 dircache **out);
/* Stops the poll and the notifier (no notification is sent after it
 * returns 0) and waits up to WAIT_MS for both threads: 0, or -ETIMEDOUT
 * when one is stuck (the notifier in a notification the kernel makes wait
 * for a directory whose lock a request nobody will answer holds: abort
 * the connection, then free). */
int dircache_stop(dircache *dc, uint32_t wait_ms);
/* No notification is started from now on (one in progress is not
 * interrupted); the threads keep running until dircache_stop. For the
 * unmount guard: callable from any thread, any time; NULL is fine. */
void dircache_quiesce(dircache *dc);
/* Stops the thread (waiting for it) and frees everything; NULL is fine. */
void dircache_free(dircache *dc);

uint64_t dircache_begin(dircache *dc, uint64_t parent);
int dircache_note(dircache *dc, uint64_t parent, const char *name, uint64_t gen);
void dircache_own_begin(dircache *dc);
/* DELTA: +1 the call added NAME to PARENT, -1 removed it, 0 it failed (or
 * its outcome is unknown): nothing is counted. */
void dircache_own_end(dircache *dc, uint64_t parent, const char *name, int delta);

/* COMPLETE DIRECTORIES. A directory this mount just made (INO, from a
 * successful mkdir, called before that mkdir's own_end) starts complete:
 * the mount knows all of its names (none), and keeps knowing them through
 * its own changes, until the first invalidation (another client changed
 * it, a rename, a failed poll). dircache_absent is 1 when PARENT is
 * complete and has no NAME: the lookup may be answered "no such name"
 * without asking meta (within the same bound as a cached negative entry).
 * Callers still dircache_note the name. */
void dircache_dir_made(dircache *dc, uint64_t ino);
/* INO stops being complete: call before a change of its names that
 * dircache_own_end cannot describe (rename). */
void dircache_incomplete(dircache *dc, uint64_t ino);
int dircache_absent(dircache *dc, uint64_t parent, const char *name);
/* A lookup's dircache_begin, dircache_absent and, for a name known
 * absent and NOTE set (a negative entry may be cached), its
 * dircache_note, in one hold of the lock (the lookup before every create
 * of a new name: one hold instead of three). 1 when NAME is known absent,
 * *CACHE then what dircache_note returned (0 without NOTE); else 0, *GEN
 * what dircache_begin returned, and the caller notes after its meta call
 * as before. */
int dircache_begin_absent(dircache *dc, uint64_t parent, const char *name, int note,
                          uint64_t *gen, int *cache);
/* LISTED DIRECTORIES. Makes DIR (a directory begun here, i.e. tracked)
 * complete from meta's listing of it (DIRLIST pages read as CR, all with
 * one entry-change count), so later lookups of absent names there need no
 * meta call either. The listing is taken like a poll (own changes and
 * polls wait for it) and installed only when that count shows nobody
 * else changed the directory since the names this mount handed out were
 * vouched for; from then on the directory keeps coherent exactly as one
 * made here (invalidation at the first foreign change: the same bound).
 * Only a directory this mount added a name to since it began tracking it
 * is listed: one it creates in, where the next lookups of absent names
 * are most likely its own creates'. Elsewhere a name another client just
 * made and this mount never looked up stays visible at once (a program
 * told about a new file by other means opens it); in a listed directory,
 * as in one made here, it may take the bound above.
 * Skipped (0) when the directory has more than CFS_DIRCACHE_LIST_MAX
 * entries (default 4096; 0 turns listing off), when it changed between
 * pages, when a poll is running, or when all complete directories already
 * hold 256 Ki names; a directory is tried at most once a second (once per
 * idle period when too big). 1: DIR is complete now. May block (one
 * meta round trip per 1024 entries); call it from no thread that is
 * between own_begin and own_end. */
int dircache_list(dircache *dc, uint64_t dir, const struct meta_cred *cr);
/* 1 when no poll found DIR changed by another client since GEN (from
 * dircache_begin before a read of DIR) and its count is still polled:
 * what was read then still holds within the names' bound. Meta counts a
 * change of a directory's default ACL too (meta_dir_versions), so the
 * mount's "no default ACL" cache lives on this; 0 once meta proved older
 * than DIRLIST (it may not count those). */
int dircache_unchanged(dircache *dc, uint64_t dir, uint64_t gen);
/* 1 when the last poll succeeded less than a second ago (or nothing is
 * tracked yet and the last poll did not fail). */
int dircache_healthy(dircache *dc);
/* One poll now. 0 (also after dircache_quiesce: nothing done) or <0
 * (the poll failed; -ETIMEDOUT: another poll held on for 5 s). */
int dircache_sync(dircache *dc);

struct dircache_stats {
	uint64_t polls, poll_failures, dirs, names, invalidations, lists;
	uint64_t deferred; /* changed directories left for a later poll: the queue was full */
};
void dircache_get_stats(dircache *dc, struct dircache_stats *out);

#endif
