/* meta_client.h - blocking client of the metadata service, with failover.
 *
 * A meta_client knows a list of meta instances (any of them serves any
 * request: they share one KV store). Each call picks an instance (round
 * robin over those not marked down), and on a transport failure (connect
 * refused, connection closed, deadline passed) or a busy / unavailable
 * reply (-CFS_EUNAVAIL, -CFS_EFENCED, a KV conflict that outlived the
 * server's retries) resends to the next one, until the call's retry
 * budget is spent, and marks the failed one down for a while, unless it
 * answered the error itself and is in service (a conflict, its
 * -CFS_ETIMEDOUT that asks for a resend: meta_client.c instance_suspect).
 * Mutations carry a request id (client id, seq) fixed before the first
 * attempt and reused on every resend, so a request whose first instance
 * died after committing is applied once and answers as the first time
 * (meta.h "Idempotency").
 *
 * Length updates (sync, close) of one inode go first to the instance that
 * meta_rendezvous() names among the live instances whose ids the client
 * learned (INFO), so they do not conflict across instances.
 *
 * The calls mirror meta.h (same arguments and error codes) plus the caller's
 * credentials. Besides the operation's own errors they return the last
 * transport error when every instance failed (-CFS_ECLOSED,
 * -CFS_ETIMEDOUT, -ECONNREFUSED, ...), -CFS_EPROTO when a reply did not
 * decode, -ENAMETOOLONG for a name longer than the wire allows.
 *
 * Threads: every call is thread-safe and blocks; do not call from an RPC
 * loop thread. The library never aborts and logs nothing unless a log sink
 * is installed.
 */
#ifndef CFS_CLIENT_META_CLIENT_H
#define CFS_CLIENT_META_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "meta/meta.h"
#include "meta/meta_lock.h"

#define META_CLIENT_MAX_ADDRS 64
#define META_CLIENT_ADDR_MAX 64 /* longest address string + 1 ("ip:port" is <= 21) */

typedef struct meta_client meta_client;

/* Zero fields take the defaults in brackets. */
struct meta_client_opts {
	const char *const *addrs;   /* 1..META_CLIENT_MAX_ADDRS "ip:port"; copied */
	size_t naddrs;
	const char *cluster_id;     /* copied */
	const uint8_t *secret;      /* >= 16 bytes; copied */
	size_t secret_len;
	/* Request-id namespace and session owner. A client registered with
	 * mgmtd passes its node id, so the service drops its write sessions
	 * when the node fails. 0: a random id above META_CLIENT_NODE_MAX, an
	 * unmanaged client whose sessions only its closes end (meta.h). */
	uint64_t client_id;
	uint32_t timeout_ms;        /* per attempt [5000]; doubled for each further
	                             * attempt of a call on an instance that timed
	                             * out (slow, not dead), within retry_ms */
	uint32_t retry_ms;          /* budget of one call over all attempts [30000] */
	uint32_t down_ms;           /* how long a failed instance is skipped, doubling
	                               per consecutive failure up to 16x [1000] */
	int loop_threads;           /* RPC loop threads [1] */
	int conns_per_peer;         /* connections per instance [1] */
	int idle_conn_first;        /* rpc.h rpc_opts.idle_conn_first [0] */
};

/* 0, or -EINVAL (bad option; message in ERR) / -ENOMEM / -errno. */
int meta_client_new(const struct meta_client_opts *o, meta_client **out, char *err,
		    size_t errlen);
/* Fails calls in flight with -CFS_ECLOSED and frees. NULL-safe. */
void meta_client_free(meta_client *c);
uint64_t meta_client_id(const meta_client *c);

/* Adds the meta instance at ADDR ("ip:port"; copied) to a running client,
 * e.g. one that registered with mgmtd after the client started (the mount
 * feeds it from routing updates). Instances are only ever appended: one
 * that goes away stays in the table and is skipped by the usual failover
 * (marked down when calls to it fail). Calls already in flight may try the
 * new instance from their next round on.
 * Threads: any thread, concurrently with every call and with other adds
 * (adders are serialised; callers never wait for an adder). Does no I/O.
 * Returns 0 added, 1 already known (the same address string, or one that
 * names the same ip:port), -EINVAL for a bad address, -ENOSPC when
 * META_CLIENT_MAX_ADDRS instances are known. */
int meta_client_add_addr(meta_client *c, const char *addr);
/* How many instances the client knows (meta_client_new's plus those added
 * since). Any thread. */
size_t meta_client_naddrs(meta_client *c);

/* In-process instance (meta_local.h): FN runs an encoded request of TYPE
 * (REQ, LEN bytes) in the calling thread and returns 0 with the encoded
 * reply in RESP, <0 with the error text in ERR, or 1 (META_LOCAL_PASS) for
 * a type it does not run. A function pointer, so the client library does
 * not link the KV store. */
typedef int (*meta_client_local_fn)(void *arg, uint16_t type, const uint8_t *req, size_t len,
				    struct buf *resp, char *err, size_t errlen);
/* Sends every call through FN(ARG, ...) first; a call it passes on (1), or
 * that fails with a failover error (-CFS_EUNAVAIL, a conflict that outlived
 * the retries, ...), goes to the instances as usual, with the same request
 * id (applied once: meta.h "Idempotency"). An unlink or rename FN ran
 * is followed by a GC_KICK to an instance, sent without waiting (the file
 * comment's "GC kicks"). Set it before the first call
 * and keep ARG alive until meta_client_free; NULL turns it off.
 * Threads: not concurrently with calls. */
void meta_client_set_local(meta_client *c, meta_client_local_fn fn, void *arg);
/* The in-process instance's direct calls (meta_local.h, meta_local_call_req):
 * FN(ARG of meta_client_set_local, M, R, ERR, ERRLEN) runs the request M
 * and fills R (type and caller memory set) as decoding its reply would,
 * or returns 1 (META_LOCAL_PASS) for a type it does not take, before
 * anything runs. A call tries FN first, then (passed on) the encoded way
 * through the FN of meta_client_set_local, with the same outcomes. Set it
 * after meta_client_set_local (ignored without one). Threads: as that. */
struct meta_rpc_req;
struct meta_rpc_resp;
typedef int (*meta_client_local_req_fn)(void *arg, const struct meta_rpc_req *m,
					struct meta_rpc_resp *r, char *err, size_t errlen);
void meta_client_set_local_req(meta_client *c, meta_client_local_req_fn fn);
/* 1 when an in-process instance is set (meta_client_set_local), else 0.
 * Any thread (not concurrently with meta_client_set_local). */
int meta_client_has_local(const meta_client *c);

/* The server's message for this thread's last failed call ("CREATE: File
 * exists"), or "" when it gave none. Thread-local storage. */
const char *meta_client_last_error(void);

/* Failover counters since meta_client_new. */
struct meta_client_stats {
	uint64_t calls;     /* calls made */
	uint64_t resends;   /* attempts after a call's first */
	uint64_t failovers; /* instances marked down */
};
void meta_client_get_stats(meta_client *c, struct meta_client_stats *out);

/* An ECHO round trip through the same path as every call (the transport
 * baseline of `chainfs bench meta`). 0 or an error. */
int meta_client_ping(meta_client *c);

int meta_client_lookup(meta_client *c, const struct meta_cred *cr, uint64_t parent,
		       struct meta_name name, struct meta_inode *out);
int meta_client_getattr(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			struct meta_inode *out);
int meta_client_access(meta_client *c, const struct meta_cred *cr, uint64_t ino, int mask);
/* OUT may be NULL. */
int meta_client_setattr(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			const struct meta_setattr *sa, struct meta_inode *out);
int meta_client_statfs(meta_client *c, const struct meta_cred *cr, struct meta_statfs *out);

/* OUT and SESSION may be NULL. */
int meta_client_create(meta_client *c, const struct meta_cred *cr, uint64_t parent,
		       struct meta_name name, uint32_t mode, unsigned flags,
		       struct meta_inode *out, uint64_t *session);
/* CREATE / UNLINK that also return the parent directory's attributes
 * read right after the change (DIR; DIR->ino 0 when meta could not give
 * them, or is too old to know these messages: the plain call is made then,
 * and from then on). Same errors as meta_client_create / _unlink. */
int meta_client_create_dir(meta_client *c, const struct meta_cred *cr, uint64_t parent,
			   struct meta_name name, uint32_t mode, unsigned flags,
			   struct meta_inode *out, uint64_t *session, struct meta_inode *dir);
int meta_client_unlink_dir(meta_client *c, const struct meta_cred *cr, uint64_t parent,
			   struct meta_name name, struct meta_inode *dir);
int meta_client_open(meta_client *c, const struct meta_cred *cr, uint64_t ino, unsigned flags,
		     struct meta_inode *out, uint64_t *session);
/* Inline data (meta.h "inline data", meta_idata.c). D->buf holds
 * META_IDATA_MAX bytes; the bytes of an inline file land there (*has = 1;
 * has may be NULL). open_idata: meta_client_open that also returns the
 * bytes of an inline file (META_O_IDATA is added to FLAGS). Errors as the
 * meta calls: -CFS_ENOTINLINE, -EBUSY, -EAGAIN. */
int meta_client_open_idata(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			   unsigned flags, struct meta_inode *out, uint64_t *session,
			   struct meta_idata_out *d, int *has);
int meta_client_idata_write(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			    uint64_t off, const void *data, size_t len, struct meta_inode *out);
int meta_client_idata_read(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			   struct meta_inode *out, struct meta_idata_out *d, int *has);
int meta_client_idata_begin(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			    struct meta_inode *out, struct meta_idata_out *d);
int meta_client_idata_commit(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			     uint64_t ver, unsigned flags, struct meta_inode *out);
/* LEN may be NULL. */
int meta_client_sync(meta_client *c, const struct meta_cred *cr, uint64_t ino,
		     const struct meta_length *len, int query, uint64_t *size);
int meta_client_close(meta_client *c, const struct meta_cred *cr, uint64_t ino, uint64_t session,
		      const struct meta_length *len);
/* Close when LEN (NULL: nothing written) covers everything this session
 * wrote: one meta txn, no storage query (meta_close_known). */
int meta_client_close_known(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			    uint64_t session, const struct meta_length *len);
/* Ends N (1..META_CLOSE_MANY_MAX) write sessions with nothing to report
 * in one call and one meta txn (meta_close_many). PAIRS: N (ino, session)
 * pairs. An old meta gets one meta_client_close_known each. 0 or <0. */
int meta_client_close_many(meta_client *c, const uint64_t *pairs, int n);
/* fsync(2): settles LEN (may be NULL) and returns once every metadata
 * change committed before it is durable (meta_fsync). INO: the file, or
 * the directory for fsyncdir. */
int meta_client_fsync(meta_client *c, const struct meta_cred *cr, uint64_t ino,
		      const struct meta_length *len, uint64_t *size);

int meta_client_mkdir(meta_client *c, const struct meta_cred *cr, uint64_t parent,
		      struct meta_name name, uint32_t mode, struct meta_inode *out);
/* meta_mknod over RPC (type 224): MODE carries the S_IFMT type bits. */
int meta_client_mknod(meta_client *c, const struct meta_cred *cr, uint64_t parent,
		      struct meta_name name, uint32_t mode, uint64_t rdev, struct meta_inode *out);
int meta_client_rmdir(meta_client *c, const struct meta_cred *cr, uint64_t parent,
		      struct meta_name name);
int meta_client_unlink(meta_client *c, const struct meta_cred *cr, uint64_t parent,
		       struct meta_name name);
int meta_client_rename(meta_client *c, const struct meta_cred *cr, uint64_t sparent,
		       struct meta_name sname, uint64_t dparent, struct meta_name dname,
		       unsigned flags);
int meta_client_link(meta_client *c, const struct meta_cred *cr, uint64_t ino, uint64_t parent,
		     struct meta_name name, struct meta_inode *out);
int meta_client_symlink(meta_client *c, const struct meta_cred *cr, uint64_t parent,
			struct meta_name name, struct meta_name target, struct meta_inode *out);
/* Copies the target (NUL-terminated when it fits) and returns its length. */
int meta_client_readlink(meta_client *c, const struct meta_cred *cr, uint64_t ino, char *buf,
			 size_t cap);
/* As meta_readdir; MAX is capped at 1024 per call. */
int meta_client_readdir(meta_client *c, const struct meta_cred *cr, uint64_t dir,
			struct meta_name cursor, struct meta_dirent *ents, int max, int *n,
			int *eof);
/* As meta_dir_list (DIRLIST): a readdir page and *ver, DIR's entry-change
 * count read in the same snapshot; MAX is capped at 1024 per call. A meta
 * older than DIRLIST: -CFS_EBADMSG_TYPE. */
int meta_client_dir_list(meta_client *c, const struct meta_cred *cr, uint64_t dir,
			 struct meta_name cursor, struct meta_dirent *ents, int max, int *n,
			 int *eof, uint64_t *ver);

int meta_client_setxattr(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			 struct meta_name name, const void *val, size_t len, unsigned flags);
/* As meta_getxattr / meta_listxattr: the full size; copies when cap > 0. */
int meta_client_getxattr(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			 struct meta_name name, void *buf, size_t cap);
int meta_client_listxattr(meta_client *c, const struct meta_cred *cr, uint64_t ino, char *buf,
			  size_t cap);
int meta_client_removexattr(meta_client *c, const struct meta_cred *cr, uint64_t ino,
			    struct meta_name name);

/* *has gets whether INO has a layout (files always; directories when a
 * default is set); OUT (may be NULL) gets it. */
int meta_client_layout_get(meta_client *c, const struct meta_cred *cr, uint64_t ino, int *has,
			   struct meta_layout *out);
/* -EINVAL with the server's reason in meta_client_last_error(). */
int meta_client_layout_set(meta_client *c, const struct meta_cred *cr, uint64_t dir,
			   uint32_t chunk_size, uint32_t stripe, uint32_t table_id);

/* File locks (meta_lock.h); the holder's client is this client's id.
 * lock_set: 0 or -EAGAIN on a conflict (it does not wait: callers that
 * must wait retry). lock_get: 1 and *out (the conflicting lock), 0 when
 * none conflicts. lock_release: drops the locks of OWNER (any owner of
 * this client with META_RPC_LOCK_ANY_OWNER in KINDS) of the kinds in the
 * KINDS mask on INO. */
int meta_client_lock_set(meta_client *c, uint64_t ino, const struct meta_lock *l);
int meta_client_lock_get(meta_client *c, uint64_t ino, const struct meta_lock *l,
			 struct meta_lock *out);
int meta_client_lock_release(meta_client *c, uint64_t ino, uint64_t owner, unsigned kinds);

/* The entry-change counts of directories DIRS[0..N) (N <= 1024) into OUT
 * (meta_dir_versions): a mount polls them to learn which directories
 * another client changed since it cached names in them. 0 or <0 (a meta
 * older than DIRVER answers with its "unknown type" error). */
int meta_client_dir_versions(meta_client *c, const uint64_t *dirs, size_t n, uint64_t *out);
/* Lookup-ahead (meta_lookup_plus over LOOKUP_PLUS 267): DIR's entries
 * from name START on (included) with their inodes, up to MAX
 * (<= META_PLUS_MAX), in one round trip; FN gets each (meta_plus_fn,
 * without the NULL reset call) in name order. *eof: the listing ended.
 * Errors as meta_client_lookup of DIR; a meta older than the message
 * answers with its "unknown type" error (callers then stop asking). */
int meta_client_lookup_plus(meta_client *c, const struct meta_cred *cr, uint64_t dir,
			    struct meta_name start, int max, meta_plus_fn fn, void *arg,
			    int *eof);
/* The same over LOOKUP_PLUSD (233, meta_lookup_plus_idata): FN also gets
 * the bytes of each inline file the caller may read (D borrowed for the
 * call; NULL for other entries). An old meta: its "unknown type" error. */
int meta_client_lookup_plus_idata(meta_client *c, const struct meta_cred *cr, uint64_t dir,
				  struct meta_name start, int max, meta_plusd_fn fn, void *arg,
				  int *eof);
/* Sends an already encoded request of TYPE (any meta message family, e.g.
 * the KVCache index, meta_kvc_proto.h) with the same failover as every
 * call; RESP gets the reply payload. The request must be safe to resend
 * (the KVCache messages are). 0 or the final error (the server's message
 * in meta_client_last_error()). */
int meta_client_call_raw(meta_client *c, uint16_t type, const struct buf *req,
			 struct buf *resp);

#endif
