/* fuse_fs.h - the FUSE mount: libfuse3 low-level operations over the client
 * core (meta_client for metadata, file_io for data).
 *
 * fusefs_run mounts MOUNTPOINT, serves requests on a multi-threaded session
 * loop until the file system is unmounted (fusermount3 -u / umount) or the
 * process gets SIGTERM, SIGINT or SIGHUP, then unmounts and returns. Inode
 * numbers are meta inode ids (the root is 1 in both). Every request runs
 * the meta call with the caller's uid, gid and supplementary groups; meta
 * checks permissions (the kernel too: default_permissions), and errors
 * reach applications as the errno meta chose.
 *
 * Threads: call fusefs_run from the main thread with SIGTERM, SIGINT and
 * SIGHUP blocked in every other thread (block them before starting the
 * clients' threads): it unblocks them in the calling thread only, so the
 * stop signal interrupts the session loop's wait.
 */
#ifndef CFS_FUSE_FUSE_FS_H
#define CFS_FUSE_FUSE_FS_H

#include <stddef.h>

#include "client/file_io.h"
#include "client/meta_client.h"

struct usrbio;

struct fusefs_opts {
	meta_client *meta;       /* borrowed; required */
	file_io *fio;            /* borrowed; NULL: reads and writes fail with EIO */
	double attr_timeout;     /* seconds the kernel caches attributes */
	double entry_timeout;    /* seconds the kernel caches names */
	double negative_timeout; /* seconds the kernel caches "no such name" */
	uint32_t dircache_poll_ms; /* poll of directory change counts (dircache.h); 0: none,
	                              then names are cached at most 1 s and absent names not */
	int keep_cache_ro;       /* files opened read-only keep the kernel page cache */
	int threads;             /* max session-loop threads [64]: each blocks on its request's
	                            RPCs, so this bounds the requests in flight (4 KiB random
	                            reads at depth 64 need 64) */
	int allow_other;        /* let other users use the mount (needs root or user_allow_other) */
	int readdirplus_attrs;  /* entries per directory listing given full attributes [1024] */
	const char *extra_opts; /* more -o mount options (comma-separated); may be NULL */
	int debug;              /* libfuse request tracing to stderr */
	struct usrbio *usrbio;  /* borrowed; NULL: no shared-memory rings (src/usrbio) */
	int fuse_uring;         /* serve requests over io_uring when the kernel allows it
	                           (fuse_uring.h); else, or when refused, /dev/fuse */
};

/* 0 after a clean unmount; -ENODEV with a message in ERR when FUSE is not
 * available (/dev/fuse missing or not accessible); -EBUSY when MOUNTPOINT is
 * already a mount point; -EINVAL / -EIO (mount failed; message in ERR). */
int fusefs_run(const char *mountpoint, const struct fusefs_opts *o, char *err, size_t errlen);

/* 1 when PATH is a mount point (its device differs from its parent's), 0
 * when not, <0 when it cannot be examined. */
int fusefs_is_mountpoint(const char *path);

#endif
