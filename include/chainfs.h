/* chainfs.h - the ChainFS native client API: zero-copy I/O through
 * shared-memory rings served by a `chainfs mount` daemon.
 *
 * MODEL. An IOV is a shared-memory buffer (a file under /dev/shm) that the
 * application and the mount daemon both map: reads land in it and writes
 * are taken from it, with no copy in the daemon. An IOR is a
 * submission/completion ring in shared memory. The application registers
 * each file descriptor it wants to use (cfs_reg_fd), prepares I/Os on a
 * ring (cfs_prep_io: a file range and a buffer range), hints the daemon
 * (cfs_submit_ios) and reaps completions (cfs_wait_for_ios): each carries
 * the slot index cfs_prep_io returned, the result (bytes, or -errno) and
 * the caller's userdata. Metadata (open, stat, close) still goes through
 * the FUSE mount. See docs/usrbio.md for the protocol and the guarantees.
 *
 * ERRORS. Every function returning int returns >= 0 on success and
 * -errno on failure, as liburing does. Nothing aborts, nothing logs.
 *
 * THREADS. Registration (cfs_reg_fd / cfs_dereg_fd) and creation and
 * destruction of iovs and rings may be called from any thread. On one
 * ring, one thread at a time may prepare and submit, and one thread at a
 * time may wait (the two may differ). Different rings are independent.
 *
 * PROCESSES. Rings, iovs and registrations belong to the process that
 * made them. A child created by fork() must make its own rings; an fd
 * registered by the parent is registered again for the child on its first
 * cfs_prep_io. When a process dies, the daemon releases everything it
 * held. When the mount daemon dies, pending and later calls on its rings
 * fail with -ENOTCONN (never hang); new rings work once it is back.
 *
 * Link with -lchainfs (pkg-config chainfs). Symbols are versioned
 * (CHAINFS_1).
 */
#ifndef CHAINFS_H
#define CHAINFS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cfs_iov cfs_iov; /* opaque: a registered shared-memory buffer */
typedef struct cfs_ior cfs_ior; /* opaque: a submission/completion ring */

/* Ring flags (same values as 3FS's HF3FS_IOR_*). */
#define CFS_IOR_ALLOW_READ_UNCOMMITTED 1ull /* reads may return data a write has not
                                               committed on every replica yet */
#define CFS_IOR_FORBID_READ_HOLES      2ull /* a read touching a hole fails with -ENODATA
                                               instead of returning zeros */
/* ChainFS's own: a write ring whose single-chunk writes that carry a CRC
 * (the library's KVCache puts) complete without a device flush on the
 * replicas (KVCache --durability cache, docs/kvcache.md "Durability"):
 * safe against process crashes, not against power loss. Daemons before
 * it refuse the ring with -EINVAL. The mount honours it on any file the
 * ring's process may write, as a local filesystem leaves durability to
 * the writer's fsync: after power loss a chunk such a ring wrote may come
 * back as its previous version (on some replicas only) or fail its CRC
 * (-EBADMSG) as a whole, bytes others wrote in it before included. Only
 * KVCache's index CRC turns that into a miss; for other files nothing
 * tells a previous version, so use it only for data whose readers check
 * it (docs/usrbio.md "Cache-mode writes"). */
#define CFS_IOR_NOFLUSH (1ull << 32)

/* A completion. */
struct cfs_cqe {
	int32_t index;        /* the slot cfs_prep_io returned */
	int32_t reserved;
	int64_t result;       /* bytes read or written, or -errno */
	const void *userdata; /* as given to cfs_prep_io */
};

/* ---- mount points ---- */

/* cfs_extract_mount_point - finds the ChainFS mount PATH lives on.
 * Writes it to MP (SIZE bytes) when it fits. Returns its length + 1
 * (larger than SIZE: MP was too small and is untouched), or -1 when PATH
 * is not on a ChainFS mount or cannot be resolved. */
int cfs_extract_mount_point(char *mp, int size, const char *path);

/* cfs_is_chainfs - 1 when FD is a file or directory of a ChainFS mount
 * (asked of the daemon by ioctl), else 0. */
int cfs_is_chainfs(int fd);

/* ---- iovs ---- */

/* cfs_iov_create - creates a SIZE-byte shared-memory buffer under /dev/shm
 * (mode 0600) and registers it with the mount MOUNT.
 * BLOCK_SIZE: 0, or a hint (<= SIZE) that no I/O crosses a multiple of it;
 * kept for 3FS compatibility, not needed here. NUMA: accepted, ignored.
 * On success *OUT owns the mapping; cfs_iov_destroy releases it.
 * ERRORS: -EINVAL (NULL or empty MOUNT, SIZE 0, BLOCK_SIZE > SIZE, MOUNT
 * longer than 255 bytes); -ENOMEM; -ENOENT / -ENOTCONN (MOUNT is not a
 * live ChainFS mount); other -errno from shm_open, ftruncate, mmap, symlink. */
int cfs_iov_create(const char *mount, size_t size, size_t block_size, int numa, cfs_iov **out);

/* cfs_iov_open - maps a buffer another process of the same user created
 * with cfs_iov_create, found by ID (it stays registered by its creator;
 * it lives until the creator destroys it or dies).
 * ERRORS: -ENOENT (no such id on MOUNT), -EINVAL (SIZE larger than the
 * buffer, or the link does not point into /dev/shm), other -errno. */
int cfs_iov_open(const char *mount, const uint8_t id[16], size_t size, size_t block_size,
                 int numa, cfs_iov **out);

/* cfs_iov_unlink - removes the buffer's name from /dev/shm (the mappings
 * stay valid; cfs_iov_open by id no longer works). NULL-safe. */
void cfs_iov_unlink(cfs_iov *iov);

/* cfs_iov_destroy - deregisters (if this handle created the buffer),
 * unmaps and frees. The caller must have reaped every I/O using it: the
 * daemon keeps its own mapping until they finish, so an early destroy
 * cannot crash the daemon, but the data goes nowhere. NULL-safe. */
void cfs_iov_destroy(cfs_iov *iov);

/* Accessors; valid while the handle lives. */
void *cfs_iov_base(const cfs_iov *iov);
size_t cfs_iov_size(const cfs_iov *iov);
const uint8_t *cfs_iov_id(const cfs_iov *iov); /* 16 bytes */

/* ---- rings ---- */

struct cfs_ior_opts {
	int entries;       /* slots (I/Os in flight), 1..65536 */
	int for_read;      /* 1: a read ring; 0: a write ring (a ring does one direction) */
	int io_depth;      /* > 0: the daemon takes exactly io_depth I/Os per batch (it
	                      waits until that many are prepared); 0: as soon as possible;
	                      < 0: as soon as possible but at most -io_depth per batch,
	                      waiting up to timeout_ms for that many */
	int timeout_ms;    /* >= 0; see io_depth */
	uint64_t flags;    /* CFS_IOR_* */
	int priority;      /* accepted for 3FS compatibility; one queue serves all */
};

/* cfs_ior_size - bytes of shared memory a ring of ENTRIES slots uses
 * (0 when ENTRIES is out of range). */
size_t cfs_ior_size(int entries);

/* cfs_ior_create - creates a ring on MOUNT and registers it.
 * ERRORS: -EINVAL (bad options, MOUNT too long), -ENOMEM, -ENOENT /
 * -ENOTCONN (not a live mount), -EPROTO (the daemon's answer made no
 * sense), other -errno from shm_open, mmap, symlink, sem_open. */
int cfs_ior_create(const char *mount, const struct cfs_ior_opts *o, cfs_ior **out);

/* cfs_ior_destroy - deregisters the ring, unmaps and frees. I/Os still
 * in flight are finished by the daemon into nowhere. NULL-safe. */
void cfs_ior_destroy(cfs_ior *ior);

/* cfs_ior_entries - the ring's slots. */
int cfs_ior_entries(const cfs_ior *ior);

/* ---- file registration ---- */

/* cfs_reg_fd - registers FD (a file of a ChainFS mount, opened by this
 * process) for ring I/O. The daemon learns the inode and the open mode
 * from the kernel, and checks the caller's uid and groups against the
 * file's permissions: an fd opened read-only can only be read through a
 * ring, write-only only written. The library dup()s FD so that the file
 * stays open until cfs_dereg_fd; both numbers work in cfs_prep_io.
 * FLAGS: 0. Returns the dup'ed fd (> 0).
 * ERRORS: -EBADF (FD is not open or not on a ChainFS mount), -EINVAL (FD
 * already registered, FLAGS not 0, FD not a regular file), -EACCES (the
 * caller may not read or write the file), -EMFILE, other -errno. */
int cfs_reg_fd(int fd, uint64_t flags);

/* cfs_dereg_fd - drops the registration of FD (either number), closes the
 * dup and reports the file length the rings wrote to the metadata service.
 * I/Os already prepared finish. Unknown fds are ignored. */
void cfs_dereg_fd(int fd);

/* ---- I/O ---- */

/* cfs_prep_io - prepares one I/O: READ (must match the ring's direction)
 * LEN bytes at file offset OFF of the registered FD, into or from PTR,
 * which must lie with its LEN bytes inside the iov IOV_BASE..+IOV_SIZE
 * whose id is IOV_ID. The daemon may start it at once (it polls);
 * cfs_submit_ios wakes it. Not thread-safe per ring (see THREADS).
 * Returns the slot index (0..entries-1), echoed in the completion.
 * ERRORS: -EINVAL (direction mismatch, NULL pointers, LEN 0 or above
 * 1 GiB, buffer range outside the iov), -EBADF (FD not registered),
 * -EACCES (the registration's open mode forbids this direction), -EAGAIN
 * (every slot is in flight: reap completions first), -ENOTCONN (the
 * daemon serving this ring is gone). Errors found by the daemon (a buffer
 * id it does not know, a registration of another process, a range past
 * the largest file) come back as the completion's result. */
int cfs_prep_io(cfs_ior *ior, const uint8_t iov_id[16], const void *iov_base, size_t iov_size,
                int read, void *ptr, int fd, uint64_t off, uint64_t len, const void *userdata);

/* cfs_prep_iov - cfs_prep_io with the buffer given as a cfs_iov. */
int cfs_prep_iov(cfs_ior *ior, const cfs_iov *iov, int read, void *ptr, int fd, uint64_t off,
                 uint64_t len, const void *userdata);

/* cfs_submit_ios - wakes the daemon (a sem_post on the mount's submit
 * semaphore). Returns 0, or -ENOTCONN when the daemon is gone. */
int cfs_submit_ios(cfs_ior *ior);

/* cfs_wait_for_ios - reaps up to N completions into CQES, waiting until
 * at least MIN_RESULTS (capped at N) are there or the CLOCK_REALTIME time
 * ABS_TIMEOUT passes (NULL: no limit). Returns the number reaped (may be
 * fewer than MIN_RESULTS at the timeout; may be fewer than are ready:
 * call again), or -EINVAL (N <= 0), or -ENOTCONN when the daemon died
 * with I/Os pending and nothing was reaped. Reaping frees the slots. */
int cfs_wait_for_ios(cfs_ior *ior, struct cfs_cqe *cqes, int n, int min_results,
                     const struct timespec *abs_timeout);


/* ---- KVCache: a shared key-value page store (docs/kvcache.md) ----
 *
 * A namespace is a set of pre-sized slab files in a directory of the mount
 * (striped over every chain by the directory's layout), cut into pages of
 * one size, and an index from key to page kept by the metadata service in
 * the cluster's KV store, so every client of the namespace, on any host,
 * sees the same keys. Values move through the rings between the caller's
 * registered memory (a cfs_iov) and the slab files; the index is asked
 * once per batch (a batch is one RPC, split by the service into small
 * transactions).
 *
 * KEYS are 1..CFS_KVC_KEY_MAX bytes; engines use content (token-prefix)
 * hashes, so two values put under one key are interchangeable: the first
 * put to publish wins and a later put of the same key returns 0 without
 * changing it (its page is freed). VALUES are 0..page_size bytes.
 *
 * CONSISTENCY. A put writes the page, then publishes the index entry in
 * one transaction: a get never sees a half-written value. A get reads the
 * page and then checks with the index that the key still has the version
 * it read (a page is reused only after its entry is gone, and versions
 * are never reused) and that the bytes match the CRC32C the writer
 * recorded; if either fails the key is reported missing, never with wrong
 * bytes. When the namespace is full, a put evicts the least recently used
 * entries. A put whose writer dies between page write and publish leaks
 * its page only until its lease (30 s) expires.
 *
 * ERRORS: as above (-errno). Whole-call errors are checked before anything
 * is sent and change nothing: -EINVAL (a key empty or over CFS_KVC_KEY_MAX,
 * a buffer outside the iov, N < 0), -E2BIG (N over CFS_KVC_BATCH_MAX),
 * -EMSGSIZE (a value over the page size), -ENOENT (the namespace is gone).
 * Per-key outcomes go to RESULTS.
 *
 * THREADS: a cfs_kvc may be used by any number of threads at once; each
 * call takes one of its ring pairs (opts.rings of them). */

#define CFS_KVC_KEY_MAX 256
#define CFS_KVC_BATCH_MAX 4096

typedef struct cfs_kvc cfs_kvc; /* opaque: an open namespace */

/* How to reach the metadata service. Either cluster_dir (a `chainfs up
 * --dir` directory: cluster.conf and secret are read from it) or meta +
 * cluster_id + secret_file. */
struct cfs_kvc_opts {
	const char *cluster_dir;
	const char *meta;        /* "ip:port[,ip:port...]" */
	const char *cluster_id;
	const char *secret_file;
	int rings;               /* ring pairs for concurrent calls [4] */
	int ring_entries;        /* slots per ring [64] */
	uint32_t lease_ms;       /* how long a put may take between reserve and publish
	                            before its page is reclaimed [30000] */
	uint32_t ttl_ms;         /* cfs_kvc_create: the namespace's entry lifetime (0:
	                            none); cfs_kvc_open: this handle's puts' lifetime
	                            (0: the namespace's). An entry is a miss once it
	                            expires and its page is reused. */
	uint32_t meta_timeout_ms; /* index calls: first attempt's timeout; a call is
	                            resent after it, with twice the time [5000] */
	uint32_t flags;           /* CFS_KVC_* (cfs_kvc_create); zero otherwise */
	uint64_t spare[7];       /* zero: room to grow without moving the layout */
};

/* cfs_kvc_opts.flags at cfs_kvc_create: write zeros over every page of the
 * slabs before the namespace exists (about capacity x replicas bytes of
 * writes; docs/kvcache.md "Prefill"). The first puts then overwrite space
 * storage has written once instead of filling fresh space. */
#define CFS_KVC_PREFILL 1u
/* cfs_kvc_opts.flags at cfs_kvc_create: the namespace's durability is
 * "cache" (kept in the namespace record, so every client of it uses it;
 * without the flag, and in namespaces made before it: "sync"). A sync put
 * returns after its pages were flushed to the device on every replica; a
 * cache put after they were written (O_DIRECT) and committed on every
 * replica without a device flush of their own. Both survive kill -9 of
 * any process; after power loss the last cache-mode puts before it may
 * read back as misses, never as wrong bytes (docs/kvcache.md
 * "Durability"). */
#define CFS_KVC_CACHE 2u

struct cfs_kvc_info {
	uint32_t page_size;
	uint64_t slots;          /* pages in the namespace */
	uint32_t slabs;
	char dir[1025];          /* slab directory, relative to the mount */
	uint64_t used;           /* published entries */
	uint64_t reserved;       /* puts between reserve and publish */
	uint64_t evictions, reclaimed, lost;
	uint64_t expired;        /* entries taken back after their TTL */
	double evictions_per_s;  /* over the last 10 s, all clients */
	uint32_t ttl_ms;         /* the namespace's default TTL (0: none) */
	uint32_t durability;     /* 0: sync, 1: cache (CFS_KVC_CACHE at create) */
	uint64_t spare[8];       /* room to grow without moving the layout */
};

/* cfs_kvc_create - creates namespace NAME (1..64 of [A-Za-z0-9._-]) with
 * pages of PAGE_SIZE (a power of two, 64 KiB..16 MiB) and CAPACITY bytes
 * (rounded up to pages), its slab files DIR/slab.NNNN (DIR relative to
 * MOUNT, created if missing) pre-sized, SLABS of them (0: 8).
 * ERRORS: -EEXIST, -EINVAL (bad name, page size, capacity), -errno from
 * the mount or the service. */
int cfs_kvc_create(const char *mount, const char *name, const char *dir, uint32_t page_size,
		   uint64_t capacity, int slabs, const struct cfs_kvc_opts *o);
/* cfs_kvc_destroy - deletes the index of NAME and its slab files. */
int cfs_kvc_destroy(const char *mount, const char *name, const struct cfs_kvc_opts *o);

/* cfs_kvc_open - opens NAME on MOUNT. *OUT is freed by cfs_kvc_close. */
int cfs_kvc_open(const char *mount, const char *name, const struct cfs_kvc_opts *o,
		 cfs_kvc **out);
void cfs_kvc_close(cfs_kvc *kv); /* NULL-safe; no call may be in flight */
uint32_t cfs_kvc_page_size(const cfs_kvc *kv);

/* cfs_kvc_put - stores N values: key KEYS[i] (KEY_LENS[i] bytes), value
 * LENS[i] bytes at VALS[i], inside IOV. RESULTS[i]: 0 stored (or the key
 * already held a value: first put wins), -ENOSPC (every page is held by a
 * put in progress), -ESTALE (the put took longer than its lease), -EIO.
 * Returns 0 when the call ran (see RESULTS) or a whole-call error. */
int cfs_kvc_put(cfs_kvc *kv, const cfs_iov *iov, int n, const void *const *keys,
		const size_t *key_lens, const void *const *vals, const size_t *lens, int *results);

/* cfs_kvc_get - reads N keys into BUFS[i] (CAPS[i] bytes, inside IOV).
 * RESULTS[i]: the value's length, -ENOENT (missing, or changed while
 * read, or its stored page failed its CRC on every replica: a miss, never
 * wrong bytes), -ENOBUFS (larger than CAPS[i]), -EIO. Recency of hits is
 * updated (batched by the service). */
int cfs_kvc_get(cfs_kvc *kv, const cfs_iov *iov, int n, const void *const *keys,
		const size_t *key_lens, void *const *bufs, const size_t *caps, int *results);

/* cfs_kvc_exists - RESULTS[i] = 1 when key i has a value, else 0. */
int cfs_kvc_exists(cfs_kvc *kv, int n, const void *const *keys, const size_t *key_lens,
		   int *results);
/* cfs_kvc_delete - RESULTS[i] (may be NULL) = 1 deleted, 0 absent. */
int cfs_kvc_delete(cfs_kvc *kv, int n, const void *const *keys, const size_t *key_lens,
		   int *results);
/* cfs_kvc_clear - drops every entry (gets in flight report misses). */
int cfs_kvc_clear(cfs_kvc *kv);
/* cfs_kvc_stats - fills *OUT; RECLAIM != 0 first frees expired puts. */
int cfs_kvc_stats(cfs_kvc *kv, int reclaim, struct cfs_kvc_info *out);

#ifdef __cplusplus
}
#endif

#endif
