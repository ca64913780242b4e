/* usrbio.h - the mount daemon's ring server: serves the shared-memory
 * rings of include/chainfs.h (protocol: src/usrbio/ring_abi.h; guide:
 * docs/usrbio.md).
 *
 * Applications register buffers (iovs) and rings through symlinks in the
 * mount's virtual directory and files through an ioctl (usrbio_fuse.c
 * turns those FUSE requests into the calls below). A watcher thread
 * sleeps on the mount's submit semaphore (the applications' hint) with a
 * short timeout (polling), takes prepared entries off every ring by its
 * io_depth rule, validates each against the ring owner's registrations,
 * and queues batches to worker threads. A read batch becomes one
 * storage_client_read over all its chunk pieces (grouped per server by
 * the storage client, data landing in the application's buffer); a write
 * is file_io_write from the application's buffer, durable on every
 * replica when it returns. Completions go to the ring's CQ, then a
 * sem_post wakes the application.
 *
 * Ownership: everything an application registers belongs to its process
 * (thread group); when the process dies (pidfd) the server drops it all,
 * releasing the mappings once in-flight I/Os finish.
 *
 * Threads: every function is thread-safe.
 */
#ifndef CFS_USRBIO_USRBIO_H
#define CFS_USRBIO_USRBIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "client/file_io.h"
#include "client/meta_client.h"
#include "storage_client/storage_client.h"

struct usrbio;

struct usrbio_opts {
	meta_client *meta;         /* borrowed: permission checks, sizes, length reports */
	file_io *fio;              /* borrowed: open-file state, writes */
	struct storage_client *sc; /* borrowed: batched reads */
	int workers;               /* I/O threads [64]: a write holds one for its chain round
	                              trip, so this bounds the ring writes in flight */
	uint32_t poll_ms;          /* watcher sleep when idle [2] */
	uint32_t batch_bytes;      /* a read batch's bytes at most [2 MiB] */
	uint32_t read_piece;       /* reads are cut every this many bytes inside a chunk, so
	                              the pieces spread over the replicas [256 KiB] */
};

/* The caller of a registration request (from the FUSE request). */
struct usrbio_caller {
	pid_t tid;               /* thread id the kernel reported */
	uint32_t uid, gid;
	const uint32_t *groups;
	uint32_t ngroups;
};

/* 0 or -errno with a message in ERR. Creates the submit semaphore
 * /dev/shm/sem.chainfs-submit-<pid> and starts the threads. */
int usrbio_new(const struct usrbio_opts *o, struct usrbio **out, char *err, size_t errlen);
/* Stops the threads (in-flight I/Os finish), releases every mapping and
 * registration, removes the semaphore. NULL-safe. */
void usrbio_free(struct usrbio *u);

/* Called after a write extended a file, so stat through the mount shows
 * the new length at once (the FUSE glue invalidates the kernel's cached
 * attributes). */
void usrbio_set_notify(struct usrbio *u, void (*fn)(void *arg, uint64_t ino), void *arg);

/* Virtual directory entries. */
#define USRBIO_INO_VIRT   0xFFFFFFFFFFFF0001ull /* <mount>/3fs-virt */
#define USRBIO_INO_IOVS   0xFFFFFFFFFFFF0002ull /* <mount>/3fs-virt/iovs */
#define USRBIO_INO_SUBMIT 0xFFFFFFFFFFFF0003ull /* iovs/submit-ios */
#define USRBIO_INO_LINK0  0xFFFFFFFF00000000ull /* registered links: LINK0 + n */
static inline int usrbio_is_virtual(uint64_t ino)
{
	return ino >= USRBIO_INO_LINK0;
}

/* symlink(TARGET, iovs/NAME): maps /dev/shm/<file> (owned by the caller)
 * as an iov or a ring. *VINO gets the link's inode number.
 * -EINVAL (bad name or target, ring header or size wrong), -EEXIST (id
 * in use), -EACCES (the file is not the caller's), -ENOMEM, -ENOSPC,
 * -errno from open/mmap. */
int usrbio_register(struct usrbio *u, const struct usrbio_caller *c, const char *name,
                    const char *target, uint64_t *vino);
/* unlink(iovs/NAME): -ENOENT, -EPERM (another user's). */
int usrbio_unregister(struct usrbio *u, const struct usrbio_caller *c, const char *name);
/* A registered link by NAME: 0 with its inode and owner uid, or -ENOENT. */
int usrbio_lookup(struct usrbio *u, const char *name, uint64_t *vino, uint32_t *uid);
/* Link inode VINO: its target into BUF (NUL-terminated), owner uid.
 * 0 or -ENOENT. USRBIO_INO_SUBMIT gives the submit semaphore path. */
int usrbio_readlink(struct usrbio *u, uint64_t vino, char *buf, size_t cap, uint32_t *uid);

/* The ioctl registration of an open file INO (OPEN_FLAGS: its open(2)
 * flags, from the kernel's file handle) for the caller's process. Checks
 * the caller's permissions with meta. *REG: the id SQEs carry; *MODE: 1
 * read, 2 write, 3 both. -EACCES, -EINVAL (not a regular file), -ENOMEM. */
int usrbio_reg_fd(struct usrbio *u, const struct usrbio_caller *c, uint64_t ino, int open_flags,
                  uint32_t *reg, uint32_t *mode);
/* Drops registration REG of the caller's process: -ENOENT if none. */
int usrbio_dereg_fd(struct usrbio *u, const struct usrbio_caller *c, uint32_t reg);

/* Counters for tests and tools. */
struct usrbio_stats {
	uint64_t ios, bytes, errors, batches, rings, iovs, regs, procs;
};
void usrbio_get_stats(struct usrbio *u, struct usrbio_stats *out);

#endif
