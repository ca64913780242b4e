/* meta_int.h - internals shared by the meta_*.c files (not for callers).
 *
 * Transaction helpers all take the txn and return 0 / 1 (found) / <0; a
 * KV error poisons the txn, so bodies may return the first error they see
 * and kv_run decides whether to retry.
 */
#ifndef CFS_META_META_INT_H
#define CFS_META_META_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "common/buf.h"
#include "meta/meta.h"

struct meta_ctx {
	kv_engine *kv;                 /* borrowed */
	struct meta_opts o;            /* copy of the options */
	pthread_mutex_t id_lock;       /* guards id_next, id_end */
	uint64_t id_next, id_end;      /* local inode-id range [next, end) */
	_Atomic uint64_t chain_cursor; /* round-robin position in chain tables */
	_Atomic uint64_t rng;          /* splitmix64 state for seeds and session ids */
	_Atomic uint64_t txns, retries, failures; /* meta_stats counters */
	int dsta_shards;               /* directory-counter shards written (schema.h) */
};

/* Operation codes stored in idempotency records (checked on replay). */
enum meta_op {
	META_OP_CREATE = 1, META_OP_MKDIR, META_OP_SYMLINK, META_OP_LINK, META_OP_UNLINK,
	META_OP_RMDIR, META_OP_RENAME, META_OP_SETATTR, META_OP_OPEN, META_OP_CLOSE,
	META_OP_SETXATTR, META_OP_REMOVEXATTR, META_OP_SETLAYOUT, META_OP_MKNOD,
	META_OP_IDATA_WRITE,
	META_OP_FLOOR = 100, /* IDEM(client, 0): aux is the client's floor seq */
};

int64_t meta_now(meta_ctx *m);
uint64_t meta_random(meta_ctx *m);
/* Next inode id of this instance's range (a new range from the allocator
 * when it runs out). 0 or <0. */
int meta_alloc_ino(meta_ctx *m, uint64_t *ino);

/* Stripe slots a file of SIZE bytes may use: the inode's hint doubled until
 * it covers every chunk, capped at the stripe. */
uint32_t meta_chains_hint(const struct meta_inode *in, uint64_t size);

/* kv_run on the instance's engine, counted in its stats. ALONE (may be
 * NULL): kv_run_stats.alone of the run, 0 when it failed. */
int meta_run_alone(meta_ctx *m, const struct kv_run_opts *o, kv_txn_fn fn, void *arg,
		   int *alone);
int meta_run(meta_ctx *m, const struct kv_run_opts *o, kv_txn_fn fn, void *arg);
/* An open's (or create's) O_TRUNC as meta_setattr_cut runs it. */
struct meta_otrunc_run {
	/* the open's write session of RQ's client (0: none), which the size
	 * commit requires (a tracked RQ): gone (meta_otrunc_undo of another
	 * run), -CFS_ETIMEDOUT (the client fails over and resends), nothing
	 * committed */
	uint64_t session;
	/* another run of the open came first (its record was there): its
	 * cuts may have been made long before this run's, which the head
	 * then answers from its exactly-once cache without cutting, so what
	 * storage holds past the size once this run's cuts are answered was
	 * written after the truncate: the size covers it (a length query of
	 * every stripe slot), rather than leaving it past the size, where a
	 * later extension of the file would show it */
	int resent;
	/* out, on success: the session the O_TRUNC's record names (the one
	 * the run that committed the truncate answered), or 0 (a record of
	 * an older version): the session to answer, not SESSION, which
	 * meta_otrunc_undo may have taken since this run replayed it. A
	 * record of another inode (a create's run that went afresh after an
	 * undo made or opened another file at the name): -CFS_ETIMEDOUT,
	 * the client's resend replays the create's record */
	uint64_t answered;
};

/* meta_setattr whose storage cuts (a size change) go under CKEY, NULL:
 * the storage client's own key (meta_attr.c "Late cuts"). meta_setattr
 * passes RQ's when it tracks the request; an open's O_TRUNC, untracked
 * itself, passes the open's, and OT (NULL for any other change). */
int meta_setattr_cut(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
                     uint64_t ino, const struct meta_setattr *sa, const struct meta_cut_key *ckey,
                     struct meta_otrunc_run *ot, struct meta_inode *out);
/* Undoes the open (or create) RQ of INO whose O_TRUNC failed after the
 * open made write session SESSION: one txn removes the session without
 * asking storage (the client never had it, so it wrote nothing;
 * meta_close's length query fails with the storage that failed the cut,
 * and the session stayed until the client died) and, while the open's
 * record names SESSION, sets the record's session to 0, so a resend of RQ
 * (the client fails over on a storage error) opens afresh, as a resend
 * (meta_otrunc_run.resent: some of its cuts were made), instead of being
 * answered the removed session. Unless another run of RQ committed the
 * truncate: that run answered the session, which stays; 1, *IN, the
 * inode now, and *ANSWERED, the session the truncate's record names (0:
 * none named, SESSION), which this run answers too. 0 undone; <0 (the
 * session stays: a truncate record gone with the client's floor cannot
 * tell whether another run answered it). */
int meta_otrunc_undo(meta_ctx *m, const struct meta_req *rq, uint64_t ino, uint64_t session,
                     struct meta_inode *in, uint64_t *answered);
/* The request an open's or create's O_TRUNC (request RQ, NULL: none)
 * commits its size under: RQ's client and seq with bit 63 set, a seq no
 * client draws (meta_client's start below 2^62 and count up), so every
 * run of RQ, on any instance, shares one idempotency record for the
 * truncate: a run that finds it applied neither cuts nor sets the size
 * again (a late run would set 0 over what the client wrote after another
 * run answered). The client's floor covers such a record as it covers
 * RQ's (meta_idem_check and idem_raise_floor take the seq without the
 * bit), so it is cleared as RQ's is, and a run whose record went is
 * refused. Untracked (seq 0) when RQ is, or its seq has the bit already. */
#define META_SEQ_OTRUNC (1ull << 63)
static inline struct meta_req meta_otrunc_req(const struct meta_req *rq)
{
	struct meta_req t = {rq ? rq->client : 0, 0, 0};
	if (rq && rq->seq && !(rq->seq & META_SEQ_OTRUNC))
		t.seq = rq->seq | META_SEQ_OTRUNC;
	return t;
}

/* Runs FN read-write (idempotent when rq tracks the request) or read-only. */
int meta_run_rw(meta_ctx *m, const struct meta_req *rq, kv_txn_fn fn, void *arg);
/* meta_run_rw with meta_run_alone's ALONE. */
int meta_run_rw_alone(meta_ctx *m, const struct meta_req *rq, kv_txn_fn fn, void *arg,
		      int *alone);
int meta_run_ro(meta_ctx *m, kv_txn_fn fn, void *arg);

/* Idempotency: 1 and *rec when RQ was already applied, 0 when not (or rq
 * untracked), <0. The read is a conflict read, so two racing retries of one
 * request cannot both apply. */
int meta_idem_check(kv_txn *t, const struct meta_req *rq, uint32_t op,
		    struct meta_idem_rec *rec);
/* meta_idem_check for a change of inode INO: when RQ was already applied,
 * 1 with *REC and *IN, INO as the snapshot reads it now (*IN untouched
 * when INO has gone since); 0 when not applied; <0. */
int meta_idem_replay(kv_txn *t, const struct meta_req *rq, uint32_t op, uint64_t ino,
		     struct meta_idem_rec *rec, struct meta_inode *in);
int meta_idem_put(meta_ctx *m, kv_txn *t, const struct meta_req *rq, uint32_t op, int result,
		  uint64_t ino, uint64_t aux);

/* Inode I/O. get: 0, -ENOENT, -CFS_ECORRUPT or a KV error. */
int meta_get_inode(kv_txn *t, uint64_t ino, int snapshot, struct meta_inode *out);
int meta_put_inode(kv_txn *t, const struct meta_inode *in);
/* Dentry: 1 found, 0 absent, <0. */
int meta_get_dentry(kv_txn *t, uint64_t parent, struct meta_name name, int snapshot,
		    struct meta_dentry *out);
int meta_put_dentry(kv_txn *t, uint64_t parent, struct meta_name name, uint64_t ino,
		    uint8_t type);
int meta_del_dentry(kv_txn *t, uint64_t parent, struct meta_name name);
/* Directory counters (schema.h, DSTA). meta_dir_changed records an entry
 * change in DIR at NOW and adds SUBDIRS (-1, 0, +1) to its subdirectory
 * count, with commutative writes only (no read, so no conflict on lmdb).
 * meta_dir_stat folds the counters into IN when it is a directory: nlink
 * and mtime/ctime as callers see them (snapshot reads; never write IN
 * back afterwards). meta_dir_stat_clear drops them with the directory;
 * meta_dir_time_clear drops the time (an explicit mtime replaces it). */
int meta_dir_changed(meta_ctx *m, kv_txn *t, uint64_t dir, int64_t now, int subdirs);
/* meta_dir_changed, and when IN (may be NULL) is DIR's inode as read in T,
 * what meta_dir_stat(T, IN) would fold into it right after, from the one
 * range read the change makes anyway (a second read of the counters was
 * ~6 % of an in-process create or unlink). Nothing else may write DIR's
 * counters in T after it for IN to stay what meta_dir_stat would give. */
int meta_dir_changed_stat(meta_ctx *m, kv_txn *t, uint64_t dir, int64_t now, int subdirs,
			  struct meta_inode *in);
/* Adds 1 to DIR's entry-change count without an entry change: a change
 * of its default ACL, whose absence mounts cache as long as the names
 * (fuse_fs.c "no default ACL" cache). */
int meta_dir_bump(meta_ctx *m, kv_txn *t, uint64_t dir);
/* DIR's entry-change count (meta_dir_versions) in T (snapshot read). */
int meta_dir_version(kv_txn *t, uint64_t dir, uint64_t *out);
/* Entry changes within this long of the last recorded one leave the
 * directory's time as it is (a 250 Hz kernel tick, the granularity of a
 * local disk's timestamps). */
#define META_DIR_TIME_GRAIN_NS (4LL * 1000 * 1000)
int meta_dir_stat(kv_txn *t, struct meta_inode *in);
int meta_dir_stat_clear(kv_txn *t, uint64_t dir);
int meta_dir_time_clear(kv_txn *t, uint64_t dir);
/* 1 when directory DIR has an entry (a conflict read of at most one key). */
int meta_dir_nonempty(kv_txn *t, uint64_t dir);
/* Queues a file whose last link went for GC. */
int meta_gc_enqueue(meta_ctx *m, kv_txn *t, uint64_t ino);
/* The end of file IN's data on storage (the end of the last chunk of the
 * first chains_used stripe slots, or of every slot when ALL) into *LEN:
 * 0, or the first query's error (-EOPNOTSUPP without storage;
 * -CFS_EUNAVAIL on a thread inside meta_storage_bar, asking nothing). */
int meta_query_storage(meta_ctx *m, const struct meta_inode *in, int all, uint64_t *len);
/* Storage bar of the calling thread (meta_dispatch.c, KV-only forms: the
 * mount's in-process instance, the service's loop threads): while set,
 * meta_query_storage refuses and notes it. meta_storage_bar(1) starts it
 * and clears the note; meta_storage_bar(0) ends it and returns 1 when a
 * query was refused meanwhile (the operation must go where storage may be
 * asked; it committed nothing past what a rerun repeats harmlessly). */
int meta_storage_bar(int on);
/* 1 when file INO has a write session, 0 if not, <0. SNAPSHOT 0: a
 * conflict read (a session opened meanwhile aborts one of the txns). */
int meta_has_sessions(kv_txn *t, uint64_t ino, int snapshot);

/* Inline data records (meta_idata.c). get: 1 found (R's data borrowed
 * until the txn ends), 0 absent (R zeroed), <0. resize: sets the bytes
 * of inline inode INO to LEN (cut or zero-filled; SCRATCH has
 * META_IDATA_MAX bytes); -CFS_ENOTINLINE over META_IDATA_MAX. */
int meta_idata_get(kv_txn *t, uint64_t ino, int snapshot, struct meta_idata_rec *r);
int meta_idata_put(kv_txn *t, uint64_t ino, const struct meta_idata_rec *r);
int meta_idata_clear(kv_txn *t, uint64_t ino);
int meta_idata_resize(kv_txn *t, uint64_t ino, uint64_t len, uint8_t *scratch);

/* Permission: MASK of 4 (read), 2 (write), 1 (search/execute). 0 or -EACCES. */
int meta_may(const struct meta_inode *in, const struct meta_cred *c, int mask);
int meta_in_group(const struct meta_cred *c, uint32_t gid);
/* Sticky-directory rule for removing or replacing VICTIM in DIR: 0 or -EPERM. */
int meta_sticky_ok(const struct meta_inode *dir, const struct meta_inode *victim,
		   const struct meta_cred *c);
/* Parent checks for adding/removing entries: directory, write + search. */
int meta_check_parent(const struct meta_inode *dir, const struct meta_cred *c, int mask);
/* The start of a change of an entry of directory PARENT: loads PARENT
 * into *DIR, checks it with meta_check_parent(MASK) and reads NAME's
 * dentry in it (in T, not from a snapshot): 1 and *D when NAME is
 * there, 0 when not, <0 (PARENT missing, the check's error, KV). */
int meta_parent_dentry(kv_txn *t, uint64_t parent, const struct meta_cred *c, int mask,
		       struct meta_name name, struct meta_inode *dir, struct meta_dentry *d);

enum meta_name_use { META_NAME_LOOKUP, META_NAME_NEW, META_NAME_REMOVE };
/* -ENAMETOOLONG, -EINVAL ('/', NUL, empty, or "."/".." to remove/rename),
 * -EEXIST ("."/".." as a new name). */
int meta_check_name(struct meta_name name, enum meta_name_use use);

/* POSIX ACL xattrs (meta_acl.c). setx: sets (VAL) or removes (VAL NULL)
 * the access (DEFLT 0) or default ACL of IN at key K (EXISTS: the key is
 * present), keeping IN's mode in step (the caller writes IN). chmod_txn:
 * rewrites IN's access ACL, if any, after a chmod to IN->mode. */
int meta_acl_setx(meta_ctx *m, kv_txn *t, struct meta_inode *in, int deflt,
		  const struct meta_key *k, int exists, const void *val, size_t len);
int meta_acl_chmod_txn(kv_txn *t, const struct meta_inode *in);
/* Permission by IN's access ACL for a non-root caller (the mode already
 * denied it): 0 or -EACCES (also without an ACL). */
int meta_acl_may(kv_txn *t, const struct meta_inode *in, const struct meta_cred *c, int mask);

#endif
