/* lookahead.h - the mount's lookup-ahead: when the kernel's lookups miss
 * in one directory in ascending name order (stat of every file after the
 * dentry cache was dropped, `ls -l` without readdirplus, find, rsync,
 * du), the mount fetches the next entries of that directory with their
 * inodes in one meta round trip (LOOKUP_PLUS, meta_lookup_plus) and
 * answers the following lookups from that batch instead of one LOOKUP
 * round trip each.
 *
 * COHERENCE (the bound; README "Caches and coherence"). A lookup answered
 * from a batch gives what meta held when the batch was read, and only:
 *   - within attr_timeout of that read (TTL_NS; the kernel would keep the
 *     same attributes that long had it looked the name up then), with the
 *     kernel told only the rest of that time;
 *   - while the directory's dircache generation is the one taken before
 *     the read (fuse_fs.c checks with dircache_note): a change another
 *     client made in the directory ends the batch within one dircache
 *     poll, exactly as it ends the kernel's cached names;
 *   - while this mount made no change since the read to what it holds
 *     (lookahead_changed: every entry change, setattr, xattr change,
 *     write-open and writer release, lock grant drops every batch; an
 *     unlink whose name a batch held drops only the batches holding the
 *     unlinked inode or its directory, lookahead_unlinked);
 *   - for an inode this mount does not have open (fuse_fs.c asks meta then).
 * So a rename, unlink or chmod made through another mount is seen here
 * within max(one dircache poll, attr_timeout) - the same bound as without
 * the lookup-ahead.
 *
 * Only names present in a batch are answered; an absent name is asked of
 * meta as before. Batches are kept per directory in a small table
 * (LOOKAHEAD_SLOTS, hashed by directory: a collision drops the older).
 *
 * Threads: all calls are thread-safe (one mutex).
 */
#ifndef CFS_FUSE_LOOKAHEAD_H
#define CFS_FUSE_LOOKAHEAD_H

#include <stdint.h>

#include "meta/meta.h"

#define LOOKAHEAD_BATCH     128           /* entries asked by a run's first LOOKUP_PLUS */
#define LOOKAHEAD_BATCH_MAX META_PLUS_MAX /* by the next ones, and by a walk's first */
#define LOOKAHEAD_SLOTS 1024 /* directories with a batch at once (power of two) */

typedef struct lookahead lookahead;
struct lookahead_batch;

/* TTL_NS: how long after its read a batch may answer (attr_timeout).
 * 0 or -ENOMEM. */
int lookahead_new(uint64_t ttl_ns, lookahead **out);
void lookahead_free(lookahead *la);

/* This mount changed something: every batch read before is dropped. */
void lookahead_changed(lookahead *la);
/* This mount removed NAME from PARENT (its unlink succeeded). When
 * PARENT's live batch holds NAME the change is known exactly: NAME leaves
 * that batch and the batches that hold the unlinked inode or PARENT (their
 * link count, ctime or times changed) are dropped; the others go on
 * answering, as nothing they hold changed. Otherwise as
 * lookahead_changed. Fetches in flight are not kept either way. */
void lookahead_unlinked(lookahead *la, uint64_t parent, const char *name);
/* The change count lookahead_put checks (read it before the fetch). */
uint64_t lookahead_epoch(lookahead *la);
/* Meta does not know LOOKUP_PLUS: stop asking. */
void lookahead_disable(lookahead *la);

/* 1 when PARENT's batch holds NAME and may answer it: *IN gets the inode
 * (the fields fill_stat uses), *GEN the dircache generation taken before
 * the batch was read, *READ_NS when the read started (mono clock). 0: a
 * miss (a stale batch is dropped). */
int lookahead_get(lookahead *la, uint64_t parent, const char *name, struct meta_inode *in,
                  uint64_t *gen, uint64_t *read_ns);
/* PARENT's batch must not answer any more (its directory changed). */
void lookahead_drop(lookahead *la, uint64_t parent);
/* Called for a lookup lookahead_get missed: records it and returns how
 * many entries to fetch from NAME on (0: none, ask meta for NAME alone).
 * Nonzero when NAME continues an ascending run of misses in PARENT that
 * no live batch covers (LOOKAHEAD_BATCH for the run's first fetch,
 * LOOKAHEAD_BATCH_MAX for the next ones), or when it starts a run in a
 * directory a batch of its parent answered within the last second (a
 * walk over many directories: lookahead_dir_seen; once per such answer;
 * LOOKAHEAD_BATCH_MAX, as a walk reads whole directories). */
int lookahead_want(lookahead *la, uint64_t parent, const char *name);

/* DIRECTORIES a batch answered. A lookup of directory INO (NAME in PARENT)
 * answered from a batch records where its entry is: the first miss in INO
 * then fetches at once (above), and the kernel's GETATTR of INO when its
 * attributes expire may be answered from PARENT's batch (fuse_fs.c
 * "Getattr-ahead"). A table of LOOKAHEAD_SLOTS places hashed by INO (a
 * collision forgets the older); what it says is a hint, checked against
 * the batch (inode id) before any answer. */
void lookahead_dir_seen(lookahead *la, uint64_t parent, const char *name, uint64_t ino);
/* 1 and *PARENT, NAME (META_NAME_MAX + 1 bytes) when INO's place is known. */
int lookahead_dir_where(lookahead *la, uint64_t ino, uint64_t *parent, char *name);

/* WALK-AHEAD (fuse_fs.c "Walk-ahead"; off unless CFS_LOOKAHEAD_WALK_AHEAD=1).
 * A walk over directories (the peer job's stats over 100, find, du) makes
 * each directory's first lookup wait for its batch's fetch. Once a walk is
 * seen in PARENT (a subdirectory's first miss fetched at once, above), a
 * lookup of subdirectory NAME answered from PARENT's batch claims the next
 * directories after NAME in that batch that have no batch and no fetch on
 * the way (up to MAX, at most LOOKAHEAD_AHEAD useful): their inode ids go
 * to *OUT (returned count) for the caller to fetch in the background, each
 * ended with lookahead_ahead_done (lookahead_put ends it too). A fetch so
 * made is an ordinary one (la_fetch: epoch, dircache generation, TTL), so
 * the coherence bound above is unchanged. lookahead_wait: a miss in
 * PARENT waits up to MAX_NS for its walk-ahead fetch; 1 when it waited. */
#define LOOKAHEAD_AHEAD 4
int lookahead_walk_ahead(lookahead *la, uint64_t parent, const char *name, uint64_t *out, int max);
void lookahead_ahead_done(lookahead *la, uint64_t dir);
int lookahead_wait(lookahead *la, uint64_t parent, uint64_t max_ns);

/* REFILL-AHEAD (fuse_fs.c "Refill-ahead"). A walk through a directory
 * used to wait for a fetch each time it ran past the end of a batch: 78
 * times in the peer job's stat of 20,000 files in one directory, ~4 times
 * per directory (reply bytes bound the batches) in its read of 5,000 16
 * KiB files over 100. lookahead_refill: once a lookup answered from
 * PARENT's live batch is past the batch's middle, the batch does not end
 * the directory and this mount changed nothing since its read, returns 1
 * once per batch with *START (META_NAME_MAX + 1 bytes), the least name
 * after the batch's last entry, and *DATA (the batch holds inline bytes):
 * the caller fetches from *START in the background and ends with
 * lookahead_put_next, or lookahead_ahead_done when the fetch failed; a
 * miss in PARENT meanwhile may wait with lookahead_wait. Not while the
 * walk is so slow that, at its pace since the batch's read, the next
 * batch's last entry would be asked for after 3/4 of the time it may
 * answer (the TTL, or DATA_TTL_NS for a batch with inline bytes: the
 * bytes' own bound; 0: such batches claim none): a slow walk fetches at
 * the batch's end, as before.
 * lookahead_put_next keeps B as PARENT's next batch (when no batch was put
 * for PARENT since the claim): lookahead_get answers a name the current
 * batch does not hold from it, and then it takes the current batch's
 * place. It answers by the rules of COHERENCE above (its own read time,
 * dircache generation and epoch) and only while this mount changed
 * nothing at all since its fetch started (an unlink the current batch
 * absorbs, lookahead_unlinked, ends it too), so the bound is unchanged. */
int lookahead_refill(lookahead *la, uint64_t parent, uint64_t data_ttl_ns, char *start, int *data);
void lookahead_put_next(lookahead *la, uint64_t parent, struct lookahead_batch *b, uint64_t gen,
                        uint64_t epoch, uint64_t read_ns, int eof);

/* A batch being filled: new, then add (a meta_plus_fn) per entry, then
 * put (takes it: kept for PARENT when EPOCH is still current) or free. */
struct lookahead_batch *lookahead_batch_new(void);
int lookahead_batch_add(void *batch, const struct meta_dirent *de, const struct meta_inode *in);
void lookahead_batch_free(struct lookahead_batch *b);
/* The entry named NAME in B (the one just fetched): 1 and *IN, else 0. */
int lookahead_batch_find(const struct lookahead_batch *b, const char *name, struct meta_inode *in);
void lookahead_put(lookahead *la, uint64_t parent, struct lookahead_batch *b, uint64_t gen,
                   uint64_t epoch, uint64_t read_ns, int eof);

/* OPEN-AHEAD (fuse_fs.c "Open-ahead"). A batch fetched with LOOKUP_PLUSD
 * also holds the bytes of its inline files (those the fetching caller,
 * UID/GID, may read): add_idata is the meta_plusd_fn that fills it. The
 * bytes of all batches together stay under LOOKAHEAD_DATA_MAX: data_room
 * says whether a fetch with bytes may be made now. */
#define LOOKAHEAD_DATA_MAX (64u << 20)
int lookahead_batch_add_idata(void *batch, const struct meta_dirent *de,
                              const struct meta_inode *in, const struct meta_idata_out *d);
void lookahead_batch_set_cred(struct lookahead_batch *b, uint32_t uid, uint32_t gid);
int lookahead_data_room(lookahead *la);
/* 1 when PARENT's live batch holds NAME with inode INO and its bytes, read
 * less than MAX_AGE_NS ago: *IN, the bytes into BUF (META_IDATA_MAX) and
 * *LEN, the batch's *GEN, *READ_NS and fetching *UID / *GID; the entry
 * keeps no bytes after (a second open of the file asks again). Else 0. */
int lookahead_get_idata(lookahead *la, uint64_t parent, const char *name, uint64_t ino,
                        uint64_t max_age_ns, struct meta_inode *in, void *buf, uint32_t *len,
                        uint64_t *gen, uint64_t *read_ns, uint32_t *uid, uint32_t *gid);

#endif
