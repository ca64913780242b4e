/* meta.h - the metadata service's file-system operations over the KV store.
 *
 * A meta_ctx is one meta instance: it holds no file-system state of its
 * own beyond an inode-id range and a chain round-robin cursor, so any number
 * of instances (threads or processes) may serve one KV store at once. Every
 * operation is one KV transaction (kv_run, retried on conflict); length
 * updates, truncation and GC add storage calls before or between
 * transactions, as documented per call.
 *
 * Callers name entries by (parent inode, name); path resolution is the
 * client's. Names are counted byte strings (struct meta_name).
 *
 * Idempotency. Every mutation takes a struct meta_req {client, seq, low}.
 * With seq != 0 the transaction first looks for the record IDEM(client,
 * seq) and, if present, returns the recorded result without applying
 * anything; otherwise it writes that record in the same transaction as the
 * change. So a request retried after -CFS_EMAYBE (kv_run retries it itself)
 * or resent to another instance after a failover is applied once and
 * answers as the first time. req NULL or seq 0: not tracked, and a
 * maybe-committed outcome is returned to the caller as -CFS_EMAYBE. The
 * mount's in-process instance runs every mutation untracked: its calls
 * have no lost reply and go to the service only when nothing committed
 * (meta_local.c "No idempotency records").
 * Bound. LOW is the client's lowest seq still awaiting a reply (0: not
 * reported). Once LOW passes the client's floor record IDEM(client, 0) by
 * META_IDEM_FLOOR_STEP, the transaction raises the floor to LOW and deletes
 * the client's records below it (one range clear). A request whose seq is
 * below its client's floor (by less than META_IDEM_FLOOR_WINDOW) and has no
 * record is refused with -ETIMEDOUT, not applied: the client no longer
 * waits for it, so it is a stale copy of a request answered or given up on
 * (say an attempt that reached a slow instance late), and refusing it keeps
 * "applied once" true after its record went (a copy racing the raise
 * conflicts on its record; one that was never applied may still apply,
 * once). Only a raise reads the floor with a conflict, so a busy client's
 * concurrent requests do not abort when it moves. Records of clients that
 * report no LOW (old clients) or stop sending (unmounted), and floors that
 * stop moving, are pruned by meta_idem_prune after META_IDEM_TTL_NS (30
 * min).
 *
 * Directories: nlink is always 2 and mtime/ctime of a directory do not
 * change when entries are added or removed (create, link, unlink and
 * rename only put the parent inode in the read-conflict set, never write it,
 * so operations in one directory do not conflict with each other).
 *
 * Errors: 0 or a negative errno / CFS_E* code. Besides the POSIX codes
 * listed per call, any call may return KV errors that outlived kv_run's
 * retries (-CFS_ECONFLICT, -CFS_EUNAVAIL, -CFS_ETOOOLD, -CFS_EMAYBE), -EIO,
 * -ENOMEM, and -CFS_ECORRUPT when a stored record fails its checks.
 * Threads: every call is thread-safe (meta_gc_step: one thread per
 * instance) and blocks (KV and storage I/O); keep it off event-loop threads.
 */
#ifndef CFS_META_META_H
#define CFS_META_META_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv.h"
#include "meta/layout.h"
#include "meta/rendezvous.h"
#include "meta/schema.h"

typedef struct meta_ctx meta_ctx;

#define META_IDEM_TTL_NS (30LL * 60 * 1000000000LL)
/* The floor moves in steps: one write of IDEM(client, 0) per STEP requests
 * of a client keeps its concurrent txns from conflicting on it. */
#define META_IDEM_FLOOR_STEP 64
/* A seq this far or farther below the floor belongs to another incarnation
 * of the client id (sequences start at a random point of 2^62), not a
 * stale copy: it is not refused. */
#define META_IDEM_FLOOR_WINDOW (1ull << 32)
#define META_MAX_DEPTH 48     /* ancestors one rename may read for its loop check */

/* The storage service as the meta service needs it; the daemon fills it
 * with RPCs, tests with a fake. Every function returns 0 or <0 and must be
 * thread-safe. */
/* Whose cut a remove_chunks or truncate_chunk call makes: a truncate's
 * client request (CLIENT, SEQ != 0). Every run of that request, on any
 * meta instance, sends its cuts under one storage exactly-once key made
 * from it, so a late cut of an earlier run is not applied over bytes
 * written after a later run answered (meta_attr.c "Late cuts"). */
struct meta_cut_key {
	uint64_t client, seq;
};

struct meta_storage {
	void *arg;
	/* Removes every chunk of INO with index >= FIRST on CHAIN (absent
	 * chunks are not an error). KEY: see meta_cut_key; NULL for a cut
	 * no client request asked for (GC, an untracked truncate). */
	int (*remove_chunks)(void *arg, uint32_t chain, uint64_t ino, uint32_t first,
	                     const struct meta_cut_key *key);
	/* Shortens chunk (INO, INDEX) on CHAIN to LEN bytes (absent: 0).
	 * KEY as for remove_chunks. */
	int (*truncate_chunk)(void *arg, uint32_t chain, uint64_t ino, uint32_t index, uint32_t len,
	                      const struct meta_cut_key *key);
	/* The highest-indexed chunk of INO on CHAIN: 1 with *index and *len,
	 * or 0 when the chain holds none. */
	int (*query_last_chunk)(void *arg, uint32_t chain, uint64_t ino, uint32_t *index,
				uint32_t *len);
	/* Cluster capacity and free bytes. */
	int (*capacity)(void *arg, uint64_t *total, uint64_t *free);
	/* GC's remove_chunks (NULL: remove_chunks), allowed to give up
	 * sooner: GC retries a failed removal at its next pass. */
	int (*gc_remove_chunks)(void *arg, uint32_t chain, uint64_t ino, uint32_t first);
};

struct meta_opts {
	uint64_t instance_id;           /* != 0; owner of GC claims */
	uint32_t id_batch;              /* inode ids taken per allocator txn; 0: 1024 */
	struct meta_layout root_layout; /* default layout given to the root at format */
	struct meta_storage storage;
	struct meta_chain_view chains;
	int64_t gc_claim_ns;            /* GC claim lease; 0: 60 s */
	int64_t idata_lease_ns;         /* inline-data conversion claim; 0:
	                                   META_IDATA_LEASE_NS, or $CFS_TEST_IDATA_LEASE_MS */
	int64_t (*now_ns)(void);        /* wall clock; NULL: clock_wall_ns */
	uint32_t idata_max;             /* inline data threshold in bytes (<= META_IDATA_MAX;
	                                   0: new files never inline; meta_idata.c) */
};

/* Caller credentials. groups: supplementary gids (borrowed for the call). */
struct meta_cred {
	uint32_t uid, gid;
	uint32_t ngroups;
	const uint32_t *groups;
};

struct meta_req {
	uint64_t client;  /* client id (unique per client process) */
	uint64_t seq;     /* request sequence within the client; 0: untracked */
	uint64_t low;     /* client's lowest seq awaiting a reply (<= seq); 0: unknown */
};

struct meta_name {
	const char *p;
	size_t n;
};

/* A name from a C string (no copy). */
static inline struct meta_name meta_name_c(const char *s)
{
	struct meta_name n = { s, 0 };
	while (s[n.n])
		n.n++;
	return n;
}

/* ---- lifecycle ---- */

/* Creates an instance over KV (borrowed; must outlive the ctx). -EINVAL for
 * bad options (instance_id 0, invalid root layout). */
int meta_new(kv_engine *kv, const struct meta_opts *o, meta_ctx **out);
void meta_free(meta_ctx *m);
/* Creates the root directory (mode 0755, uid/gid 0, default layout from
 * opts) unless it exists. Idempotent; 0 or <0. */
int meta_format(meta_ctx *m);

/* Counters since meta_new, for metrics. */
struct meta_stats {
	uint64_t txns;      /* kv_run calls */
	uint64_t retries;   /* attempts after the first, summed */
	uint64_t failures;  /* kv_run calls that returned an error (POSIX errors included) */
};
void meta_get_stats(meta_ctx *m, struct meta_stats *out);

/* ---- attributes ---- */

enum meta_setattr_valid {
	META_SET_MODE = 1 << 0,
	META_SET_UID = 1 << 1,
	META_SET_GID = 1 << 2,
	META_SET_SIZE = 1 << 3,
	META_SET_ATIME = 1 << 4,     /* to atime below */
	META_SET_MTIME = 1 << 5,     /* to mtime below */
	META_SET_ATIME_NOW = 1 << 6,
	META_SET_MTIME_NOW = 1 << 7,
	META_SET_CTIME = 1 << 8,     /* to ctime below (root or owner) */
	/* The caller wrote or truncated the file: drop S_ISUID, and S_ISGID
	 * when group-execute is set or the caller is not in the file's group
	 * (Linux should_remove_suid); nothing for uid 0 (CAP_FSETID). Needs
	 * write permission (or META_SET_FD_WRITE), not ownership. */
	META_SET_KILL_SUIDGID = 1 << 9,
	/* The caller holds the file open for writing (ftruncate): write
	 * permission was checked at open, so SIZE and KILL_SUIDGID skip it. */
	META_SET_FD_WRITE = 1 << 10,
};

struct meta_setattr {
	unsigned valid;   /* META_SET_* */
	uint32_t mode, uid, gid;
	uint64_t size;
	int64_t atime, mtime, ctime;
};

/* Looks NAME up in PARENT ("." and ".." included). -ENOENT, -ENOTDIR
 * (parent not a directory), -EACCES (no search permission), -EINVAL /
 * -ENAMETOOLONG (bad name). */
int meta_lookup(meta_ctx *m, const struct meta_cred *c, uint64_t parent, struct meta_name name,
		struct meta_inode *out);
int meta_getattr(meta_ctx *m, uint64_t ino, struct meta_inode *out);
/* access(2): MASK of 4 (read), 2 (write), 1 (execute/search). Root passes
 * read and write, and execute only on directories or when some x bit is
 * set. -EACCES, -ENOENT, -EINVAL (bad mask). */
int meta_access(meta_ctx *m, const struct meta_cred *c, uint64_t ino, int mask);
/* POSIX setattr: chmod (owner or root; sgid dropped when the caller is not
 * in the group), chown (uid: root; gid: owner to a group of theirs, or
 * root; drops suid/sgid on non-directories), times (explicit: owner or
 * root; _NOW: also anyone with write permission), size (files only:
 * -EISDIR / -EINVAL; write permission; shrinking first removes and
 * shortens chunks on storage, then bumps truncate_ver). -EPERM, -EACCES,
 * -ENOENT, -EINVAL. OUT (may be NULL) gets the new attributes. The storage
 * step of a truncate runs before the idempotency check, so a replayed
 * truncate shortens storage again (harmless: its client has not written
 * since it sent the request). */
int meta_setattr(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		 uint64_t ino, const struct meta_setattr *sa, struct meta_inode *out);

struct meta_statfs {
	uint64_t total_bytes, free_bytes;
	uint64_t ids_allocated;  /* inode ids handed out so far (upper bound of files) */
};
int meta_statfs(meta_ctx *m, struct meta_statfs *out);

/* The entry-change counts of directories DIRS[0..N) into OUT (0 for a
 * directory never changed or gone): each call that adds, removes or
 * renames a name in a directory adds exactly 1 to its count (a rename
 * between two directories 1 to each), so a client that knows the count at
 * some moment and the changes it made itself since learns whether anyone
 * else changed the directory. A set or removal of a directory's default
 * ACL (system.posix_acl_default) adds 1 too: mounts cache that a directory
 * has none for as long as they trust its names. One read-only txn
 * (snapshot reads). 0 or <0. */
int meta_dir_versions(meta_ctx *m, const uint64_t *dirs, size_t n, uint64_t *out);

/* ---- files ---- */

enum meta_open_flags {
	META_O_WRITE = 1 << 0,  /* open for writing: records a session */
	META_O_EXCL = 1 << 1,   /* create: fail with -EEXIST if NAME exists */
	/* truncate to 0 (the caller needs write permission); implies
	 * META_O_WRITE, whatever the access mode: the truncate runs under the
	 * open's write session (a read-only O_TRUNC open gets one too) */
	META_O_TRUNC = 1 << 2,
	META_O_READ = 1 << 3,   /* open for reading (permission check) */
	/* The client handles inline data (meta_idata.c): a file this create
	 * makes starts inline (when opts.idata_max > 0), and create/open of an
	 * inline file return its bytes (meta_open_idata). */
	META_O_IDATA = 1 << 4,
};

/* Creates a regular file NAME in PARENT with permission bits MODE (umask
 * already applied by the client) or, without META_O_EXCL, opens it if it
 * exists (and with META_O_TRUNC truncates it, as meta_open). The layout
 * comes from PARENT's default. With META_O_WRITE (or META_O_TRUNC) a
 * session is recorded and *session set (else 0). -EEXIST, -EISDIR (exists
 * as a directory), -ENOENT (parent gone), -ENOTDIR, -EACCES, -EINVAL,
 * -ENAMETOOLONG. */
int meta_create(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		uint64_t parent, struct meta_name name, uint32_t mode, unsigned flags,
		struct meta_inode *out, uint64_t *session);
/* Opens INO: checks permission; META_O_WRITE records a session (*session),
 * META_O_TRUNC truncates (and records one). Read-only opens without
 * META_O_TRUNC write nothing. -ENOENT (no inode or no links left),
 * -EISDIR (write on a directory), -EACCES, -ELOOP (symlink). */
int meta_open(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq, uint64_t ino,
	      unsigned flags, struct meta_inode *out, uint64_t *session);

/* A client's view of the length it wrote. */
struct meta_length {
	uint64_t length;        /* max written end offset */
	uint64_t truncate_ver;  /* inode truncate_ver the client wrote under */
};

/* QUERY value of meta_sync: ask every chain of the stripe, ignoring the
 * chains-used hint (the session prune: a dead client may have written past
 * the hint it last reported). */
#define META_SYNC_QUERY_ALL 2
/* Updates INO's length: LEN (may be NULL) is adopted if it is larger and
 * its truncate_ver is current; with QUERY the length is also computed from
 * storage (last chunk on each chain the chains-used hint allows, or on
 * every chain with META_SYNC_QUERY_ALL). A larger LEN under an older
 * truncate_ver (written before its writer heard of another client's
 * truncate) asks every chain and raises the length to what storage holds
 * now, at most LEN (meta_file.c "Length": what was written after the
 * cut). The length only grows here (truncate shrinks it). *size (may be
 * NULL) gets the result. -ENOENT, -EIO from storage. */
int meta_sync(meta_ctx *m, uint64_t ino, const struct meta_length *len, int query,
	      uint64_t *size);
/* Closes write session SESSION of client rq->client on INO (session 0:
 * read open, nothing to do), first syncing the length as meta_sync(len,
 * query = 1). Closing an unknown session is not an error. */
int meta_close(meta_ctx *m, const struct meta_req *rq, uint64_t ino, uint64_t session,
	       const struct meta_length *len);

/* Closes SESSION like meta_close, when LEN (may be NULL: nothing
 * written) is everything this session wrote: no storage query, and the
 * length update and the session's removal are ONE txn (so a create, a
 * write and this close cost two durable steps, not four). A larger LEN
 * under an older truncate_ver is settled as meta_sync settles it (a
 * storage query) before the session goes; if that fails the session
 * stays and the error comes back. */
int meta_close_known(meta_ctx *m, const struct meta_req *rq, uint64_t ino, uint64_t session,
		     const struct meta_length *len);
/* Ends N write sessions of client rq->client in ONE txn, with nothing
 * to report: PAIRS holds N (ino, session) pairs whose lengths meta has
 * already (a mount's deferred closes of files never written or whose
 * length it reported at flush; fuse_closer.h). Unknown sessions are not
 * an error (a retry, or meta pruned them). N is 1..META_CLOSE_MANY_MAX,
 * else -EINVAL. */
#define META_CLOSE_MANY_MAX 48 /* one KV write each: under KV_MAX_WRITES */
int meta_close_many(meta_ctx *m, const struct meta_req *rq, const uint64_t *pairs, int n);
/* fsync(2): meta_sync(len, query) when LEN or QUERY says there is a
 * length to settle (INO 0 or a directory: none), then makes every
 * metadata change committed so far durable (kv_flush) before returning.
 * *size (may be NULL) as for meta_sync. */
int meta_fsync(meta_ctx *m, uint64_t ino, const struct meta_length *len, int query,
	       uint64_t *size);

/* ---- inline data (meta_idata.c) ----
 *
 * A file created with META_O_IDATA while opts.idata_max > 0 is inline: its
 * bytes live in the IDAT record next to its inode (schema.h), the record's
 * length is the file's size, and the layout it was given waits unused.
 * Writes that keep the end within idata_max change record and inode in ONE
 * txn. Growing past it, the client converts: convert_begin claims the file
 * (a lease of META_IDATA_LEASE_NS, so two converters never both copy) and
 * returns the bytes and their version; the client writes them to chunks;
 * convert_commit flips the inode to chunked if the version did not move
 * (else the client begins again). Readers see the inline bytes until the
 * flip, the chunks after it: never a mix. Chunked files never go back.
 * A file whose inline data is empty converts with one commit (EMPTY).
 *
 * Errors besides the usual: -CFS_ENOTINLINE (the file is not inline, or
 * the write would end past idata_max: convert, then use chunks), -EBUSY
 * (convert_begin: another client holds the claim), -EAGAIN
 * (convert_commit: the bytes changed since begin, or the claim is gone). */
#define META_IDATA_LEASE_NS (10LL * 1000000000LL)
enum meta_idata_commit_flags {
	META_IDATA_COMMIT_EMPTY = 1, /* flip only if the data is empty (no begin needed) */
	/* Flip nothing: record that this client is about to write chunk 0's
	 * placeholder (META_IDATA_F_PLACED), so that GC removes the chunks
	 * of the file even if no begin follows. Send it with VER UINT64_MAX:
	 * a meta from before the flag takes it as a commit whose version
	 * never matches and answers -EAGAIN, changing nothing; a meta that
	 * knows the flag never answers -EAGAIN to it (-CFS_EUNAVAIL instead
	 * for a transient failure), so that the client can tell the two. */
	META_IDATA_COMMIT_MARK = 2,
};
/* Inline bytes as calls return them: BUF is the caller's, META_IDATA_MAX bytes. */
struct meta_idata_out {
	uint8_t *buf;     /* in: META_IDATA_MAX bytes */
	uint32_t len;     /* out: bytes of data (the file's size) */
	uint64_t ver;     /* out: version of the bytes */
	uint32_t flags;   /* out: META_IDATA_F_* */
};
/* Writes LEN bytes at OFF (end <= opts.idata_max), zero-filling any gap,
 * and sets size, mtime and ctime in the same txn. OUT gets the inode. */
int meta_idata_write(meta_ctx *m, const struct meta_req *rq, uint64_t ino, uint64_t off,
		     const void *data, size_t len, struct meta_inode *out);
/* OUT gets the inode; when it is inline, D gets the bytes. */
int meta_idata_read(meta_ctx *m, uint64_t ino, struct meta_inode *out, struct meta_idata_out *d);
int meta_idata_convert_begin(meta_ctx *m, const struct meta_req *rq, uint64_t ino,
			     struct meta_inode *out, struct meta_idata_out *d);
/* VER: from begin (ignored with EMPTY). */
int meta_idata_convert_commit(meta_ctx *m, const struct meta_req *rq, uint64_t ino, uint64_t ver,
			      unsigned flags, struct meta_inode *out);
/* meta_open, and when the file is inline, its bytes into D (*has = 1). */
int meta_open_idata(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		    uint64_t ino, unsigned flags, struct meta_inode *out, uint64_t *session,
		    struct meta_idata_out *d, int *has);

/* ---- namespace ---- */

int meta_mkdir(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
	       uint64_t parent, struct meta_name name, uint32_t mode, struct meta_inode *out);
/* -ENOTEMPTY, -ENOTDIR (not a directory), -EBUSY (root), -EPERM (sticky). */
int meta_rmdir(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
	       uint64_t parent, struct meta_name name);
/* -EISDIR for directories; the last link of a file goes to the GC queue. */
int meta_unlink(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		uint64_t parent, struct meta_name name);
/* meta_create and meta_unlink that also set *DIR to PARENT's attributes
 * as meta_getattr would give them right after the change committed (the
 * CREATE_DIR / UNLINK_DIR replies, which the mount caches for the next
 * permission check): read inside the change's own txn when the KV reports
 * that nothing else committed between its snapshot and its writes
 * (kv_run_stats.alone: the state it read plus its writes is then the state
 * it committed), else by a meta_getattr after the commit; DIR->ino 0 when
 * that read failed (the directory went away meanwhile). DIR is untouched
 * when the change fails. */
int meta_create_dir(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		    uint64_t parent, struct meta_name name, uint32_t mode, unsigned flags,
		    struct meta_inode *out, uint64_t *session, struct meta_inode *dir);
int meta_unlink_dir(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		    uint64_t parent, struct meta_name name, struct meta_inode *dir);

enum meta_rename_flags {
	META_RENAME_NOREPLACE = 1 << 0, /* Linux RENAME_NOREPLACE */
	META_RENAME_EXCHANGE = 1 << 1,  /* Linux RENAME_EXCHANGE */
};
/* Atomic rename with POSIX replace rules: -EEXIST (NOREPLACE), -ENOENT,
 * -EISDIR (file over dir), -ENOTDIR (dir over file), -ENOTEMPTY, -EINVAL
 * (directory into its own subtree; bad flags; "." or ".."), -ELOOP (deeper
 * than META_MAX_DEPTH), -EPERM (sticky), -EACCES. */
int meta_rename(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		uint64_t sparent, struct meta_name sname, uint64_t dparent, struct meta_name dname,
		unsigned flags);
/* mknod(2): MODE holds the file type (S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK,
 * or S_IFREG / 0 for an empty regular file) and the permission bits (umask
 * applied by the client); RDEV is kept for devices. Devices need uid 0
 * (CAP_MKNOD), as on a local disk: -EPERM. -EINVAL (other types), and the
 * errors of meta_create with META_O_EXCL. */
int meta_mknod(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
	       uint64_t parent, struct meta_name name, uint32_t mode, uint64_t rdev,
	       struct meta_inode *out);
/* Hard link. -EPERM (directory), -EEXIST, -ENOENT, -EMLINK. */
int meta_link(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq, uint64_t ino,
	      uint64_t parent, struct meta_name name, struct meta_inode *out);
/* TARGET: 1..META_SYMLINK_MAX bytes without NUL (else -ENOENT / -ENAMETOOLONG). */
int meta_symlink(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		 uint64_t parent, struct meta_name name, struct meta_name target,
		 struct meta_inode *out);
/* Copies the target (NUL-terminated when it fits) and returns its length;
 * -EINVAL (not a symlink), -ENOENT. */
int meta_readlink(meta_ctx *m, uint64_t ino, char *buf, size_t cap);

struct meta_dirent {
	uint64_t ino;
	uint8_t type;
	uint8_t name_len;
	char name[META_NAME_MAX + 1]; /* NUL-terminated */
};
/* Lists DIR's entries after name CURSOR (empty: from the start) in name
 * byte order, up to MAX into ENTS. *n gets the count; *eof is 1 when the
 * listing is complete. Resume with the last name returned: entries present
 * for the whole listing are returned exactly once, whatever is inserted or
 * removed meanwhile. "." and ".." are not listed. -ENOTDIR, -EACCES. */
int meta_readdir(meta_ctx *m, const struct meta_cred *c, uint64_t dir, struct meta_name cursor,
		 struct meta_dirent *ents, int max, int *n, int *eof);
/* As meta_readdir, and *ver gets DIR's entry-change count
 * (meta_dir_versions) read in the same snapshot as the entries (DIRLIST):
 * pages that all come with one count make up the whole name list as of
 * that count. Needs search (x) permission on DIR, as lookups of the names
 * do: the caller (a mount) only answers lookups from the list. */
int meta_dir_list(meta_ctx *m, const struct meta_cred *c, uint64_t dir, struct meta_name cursor,
		  struct meta_dirent *ents, int max, int *n, int *eof, uint64_t *ver);

/* Lookup-ahead (LOOKUP_PLUS): DIR's entries from name START on (START
 * itself included; empty: from the first) in name byte order, up to MAX
 * (1..META_PLUS_MAX), each with its inode as meta_lookup returns it, all
 * read in one read-only transaction. Needs search (x) permission on DIR,
 * as a lookup of each of those names does: the caller (the mount) answers
 * only lookups of these names from the batch. FN gets every entry in
 * order; it is first called with DE and IN NULL, meaning "forget what
 * came before" (the body may run more than once). FN returns 0 for more,
 * > 0 to stop there (the call returns 0, *eof 0), < 0 to fail the call
 * with that error. *eof is 1 when no entry follows the
 * last one given. An entry whose inode vanished under a concurrent unlink
 * cannot be seen (one snapshot). Errors as meta_lookup of DIR: -ENOENT,
 * -ENOTDIR, -EACCES; -EINVAL (MAX out of range), -ENAMETOOLONG. */
#define META_PLUS_MAX 256
typedef int (*meta_plus_fn)(void *arg, const struct meta_dirent *de, const struct meta_inode *in);
int meta_lookup_plus(meta_ctx *m, const struct meta_cred *c, uint64_t dir, struct meta_name start,
		     int max, meta_plus_fn fn, void *arg, int *eof);
/* meta_lookup_plus that also hands FN the bytes of every inline file of
 * the batch the caller may read (read permission, as an open checks it),
 * read in the same snapshot: D->buf borrows them (valid during the call),
 * D->len is the file's size; D is NULL for any other entry. DE NULL: the
 * body (re)starts, as for meta_plus_fn. Serves read-only opens of small
 * files without a round trip each (fuse_fs.c "Open-ahead"). */
typedef int (*meta_plusd_fn)(void *arg, const struct meta_dirent *de, const struct meta_inode *in,
			     const struct meta_idata_out *d);
int meta_lookup_plus_idata(meta_ctx *m, const struct meta_cred *c, uint64_t dir,
			   struct meta_name start, int max, meta_plusd_fn fn, void *arg, int *eof);

/* Sets directory DIR's default layout (owner or root). -EINVAL with a
 * message in err for a bad layout, -ENOTDIR. */
int meta_set_dir_layout(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
			uint64_t dir, uint32_t chunk_size, uint32_t stripe, uint32_t table_id,
			char *err, size_t errlen);

/* ---- xattrs ---- */

enum meta_xattr_flags { META_XATTR_CREATE = 1, META_XATTR_REPLACE = 2 };
/* Names: "user.", "trusted." (root only) or "security." namespaces, at most
 * META_NAME_MAX bytes; values at most META_XATTR_VALUE_MAX bytes.
 * -EOPNOTSUPP (other namespace), -ERANGE / -E2BIG (too long), -EEXIST
 * (CREATE), -ENODATA (REPLACE on a missing name), -EPERM, -EACCES. */
int meta_setxattr(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		  uint64_t ino, struct meta_name name, const void *val, size_t len,
		  unsigned flags);
/* Returns the value size; copies it when cap > 0 (-ERANGE when it does not
 * fit). -ENODATA. */
int meta_getxattr(meta_ctx *m, const struct meta_cred *c, uint64_t ino, struct meta_name name,
		  void *buf, size_t cap);
/* NUL-separated names; returns the total size, copies when cap > 0
 * (-ERANGE when it does not fit). trusted.* hidden from non-root. */
int meta_listxattr(meta_ctx *m, const struct meta_cred *c, uint64_t ino, char *buf, size_t cap);
int meta_removexattr(meta_ctx *m, const struct meta_cred *c, const struct meta_req *rq,
		     uint64_t ino, struct meta_name name);

/* ---- background work ---- */

/* Claims one GC queue entry whose inode has no write session (a claim is a
 * lease in the entry, set in a txn, so two instances never both take it),
 * removes its chunks from every chain of its layout, then deletes the
 * inode, its xattrs and the entry. Returns 1 when an inode was reclaimed,
 * 0 when nothing was eligible, <0 on error (the entry stays claimed: this
 * instance retries it at its next step, others once the lease of
 * opts.gc_claim_ns expires). Call it from one thread per instance (an
 * instance may retake its own claims). */
int meta_gc_step(meta_ctx *m);
/* meta_gc_step for up to MAX entries (capped at 16) at once: one claim
 * txn, their chunk removals in parallel (up to 8 storage calls in
 * flight), one txn deleting them. Returns the number reclaimed, 0 when
 * nothing was eligible, <0 when nothing could be reclaimed for an error
 * (entries whose removal failed stay claimed, as in meta_gc_step). Same
 * thread rule as meta_gc_step. */
int meta_gc_batch(meta_ctx *m, int max);
/* Client ids (struct meta_req.client) come in two ranges:
 *   1..META_CLIENT_NODE_MAX  managed: the client's mgmtd node id. A client
 *                            that registers with mgmtd (the FUSE mount, as
 *                            node type CLIENT) uses its node id, and the
 *                            service drops its write sessions once routing
 *                            shows the node failed (meta_service.h).
 *   > META_CLIENT_NODE_MAX   unmanaged: meta_client draws a random one when
 *                            given none. Nothing says whether such a client
 *                            lives, so its sessions are never pruned: only
 *                            its close ends them (a crashed unmanaged writer
 *                            keeps an unlinked file from GC).
 * Node ids are below 2^32 (routing.h ROUTE_NODE_ID_MAX). */
#define META_CLIENT_NODE_MAX 0xFFFFFFFFull

/* 1 when CLIENT is dead (drop its sessions), else 0. Called on the
 * caller's thread, possibly several times for one client in one prune. */
typedef int (*meta_client_dead_fn)(void *arg, uint64_t client);
/* Drops the write sessions of the clients IS_DEAD calls dead, syncing each
 * affected file's length from storage first; the sessions of a file whose
 * sync fails stay for a later call. Returns the number dropped. */
int meta_session_prune(meta_ctx *m, meta_client_dead_fn is_dead, void *arg);
/* Deletes idempotency records written before NOW - TTL_NS (callers use
 * META_IDEM_TTL_NS), in batches of 48 per txn. Returns the number deleted
 * (short by a batch when a maybe-committed batch had applied). */
int meta_idem_prune(meta_ctx *m, int64_t ttl_ns);

struct meta_chunk_ref {
	uint64_t ino;
	uint32_t index;
	uint8_t in_gc;   /* set by meta_fsck: the inode is queued for GC */
	uint8_t orphan;  /* set by meta_fsck: the inode does not exist */
};
struct meta_fsck_report {
	uint64_t inodes, dentries;
	uint64_t dangling_dentries; /* dentry to a missing inode or of the wrong type */
	uint64_t nlink_mismatch;    /* nlink != number of dentries (files, symlinks) */
	uint64_t dir_nlink_mismatch; /* directory nlink != 2 + its subdirectories */
	uint64_t orphan_inodes;     /* no dentry and not queued for GC */
	uint64_t bad_parent;        /* directory whose parent field disagrees with its dentry */
	uint64_t unreachable_dirs;  /* parent chain does not reach the root (a cycle) */
	uint64_t orphan_chunks;     /* chunk of an inode that does not exist */
	uint64_t corrupt_records;   /* records that failed their checks */
	uint64_t gc_pending;        /* inodes in the GC queue */
	uint64_t sessions;
	uint64_t idata_files;       /* files whose data is inline */
	uint64_t idata_mismatch;    /* inline length != size, or inline data of a file not inline */
};
/* Scans the whole namespace in one snapshot and counts inconsistencies
 * (each also logged at WARN). CHUNKS (n refs, may be NULL) is the storage's
 * chunk list for the orphan-chunk check; each ref's in_gc and orphan flags
 * are set, so a storage check can tell a chunk whose removal is under way
 * from a lost replica. 0 or <0. */
int meta_fsck(meta_ctx *m, struct meta_chunk_ref *chunks, size_t nchunks,
	      struct meta_fsck_report *r);

#endif
