/* hf3fs_usrbio.h - 3FS USRBIO compatibility API over libchainfs.
 *
 * Programs written against 3FS's hf3fs_usrbio.h compile against this
 * header and link with -lhf3fs_api_shared: the functions, argument lists,
 * struct field names and return conventions are 3FS's. Each call maps to
 * the chainfs.h function named beside it, whose contract (errors,
 * threads, ownership) applies; differences from 3FS are noted.
 *
 * Return conventions: 0 or >= 0 on success and -errno on failure, except
 * hf3fs_reg_fd (<= 0 on success, a positive errno on failure) and
 * hf3fs_extract_mount_point (length + 1, or -1).
 */
#ifndef HF3FS_USRBIO_H
#define HF3FS_USRBIO_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define HF3FS_SUPER_MAGIC 0x8f3f5fff /* 3FS's value; hf3fs_is_hf3fs asks the daemon */

typedef void *hf3fs_iov_handle;

/* A shared-memory buffer. Allocate the struct yourself (stack or heap). */
struct hf3fs_iov {
	uint8_t *base;           /* the mapping */
	hf3fs_iov_handle iovh;   /* the library's handle; NULL for hf3fs_iovwrap */
	char id[16];             /* buffer id, as registered with the daemon */
	char mount_point[256];
	size_t size;
	size_t block_size;
	int numa;
};

typedef void *hf3fs_ior_handle;

/* A ring. Allocate the struct yourself (stack or heap). */
struct hf3fs_ior {
	struct hf3fs_iov iov;    /* the ring's own shared memory */
	hf3fs_ior_handle iorh;
	char mount_point[256];
	bool for_read;
	int io_depth;            /* > 0: batches of exactly io_depth; 0: as soon as
	                            possible; < 0: ASAP, at most -io_depth per batch,
	                            waiting up to timeout ms for that many */
	int priority;
	int timeout;             /* milliseconds */
	uint64_t flags;          /* HF3FS_IOR_* */
};

struct hf3fs_cqe {
	int32_t index;           /* slot returned by hf3fs_prep_io */
	int32_t reserved;
	int64_t result;          /* bytes, or -errno */
	const void *userdata;
};

/* true when FD is on a ChainFS mount (cfs_is_chainfs). */
bool hf3fs_is_hf3fs(int fd);

/* cfs_extract_mount_point: length of the mount point + 1, or -1. */
int hf3fs_extract_mount_point(char *hf3fs_mount_point, int size, const char *path);

/* cfs_iov_create: 0 or -errno. */
int hf3fs_iovcreate(struct hf3fs_iov *iov, const char *hf3fs_mount_point, size_t size,
                    size_t block_size, int numa);
/* cfs_iov_open: maps the buffer registered under ID. 0 or -errno. */
int hf3fs_iovopen(struct hf3fs_iov *iov, const uint8_t id[16], const char *hf3fs_mount_point,
                  size_t size, size_t block_size, int numa);
/* cfs_iov_unlink. */
void hf3fs_iovunlink(struct hf3fs_iov *iov);
/* cfs_iov_destroy; does nothing for a wrapped iov. The struct is not freed. */
void hf3fs_iovdestroy(struct hf3fs_iov *iov);
/* Describes memory BASE..+SIZE already mapped and registered (by a symlink
 * in <mount>/3fs-virt/iovs named by ID, as 3FS's Python make_iovec does)
 * without taking ownership. 0 or -EINVAL. */
int hf3fs_iovwrap(struct hf3fs_iov *iov, void *base, const uint8_t id[16],
                  const char *hf3fs_mount_point, size_t size, size_t block_size, int numa);

/* cfs_ior_size. */
size_t hf3fs_ior_size(int entries);

/* cfs_ior_create with priority 0, timeout 0, flags 0. 0 or -errno. */
int hf3fs_iorcreate(struct hf3fs_ior *ior, const char *hf3fs_mount_point, int entries,
                    bool for_read, int io_depth, int numa);
int hf3fs_iorcreate2(struct hf3fs_ior *ior, const char *hf3fs_mount_point, int entries,
                     bool for_read, int io_depth, int priority, int numa);
int hf3fs_iorcreate3(struct hf3fs_ior *ior, const char *hf3fs_mount_point, int entries,
                     bool for_read, int io_depth, int priority, int timeout, int numa);

#define HF3FS_IOR_ALLOW_READ_UNCOMMITTED 1
#define HF3FS_IOR_FORBID_READ_HOLES 2
int hf3fs_iorcreate4(struct hf3fs_ior *ior, const char *hf3fs_mount_point, int entries,
                     bool for_read, int io_depth, int timeout, int numa, uint64_t flags);

/* cfs_ior_destroy. The struct is not freed. */
void hf3fs_iordestroy(struct hf3fs_ior *ior);

/* cfs_reg_fd: <= 0 on success (minus the dup'ed fd, usable in
 * hf3fs_prep_io like FD itself), a POSITIVE errno on failure. */
int hf3fs_reg_fd(int fd, uint64_t flags);
void hf3fs_dereg_fd(int fd);

/* cfs_ior_entries. */
int hf3fs_io_entries(const struct hf3fs_ior *ior);

/* cfs_prep_io: the slot index, or -errno (-EAGAIN when the ring is full).
 * NOT thread-safe per ring. FD may be the registered fd or the value
 * hf3fs_reg_fd returned. */
int hf3fs_prep_io(const struct hf3fs_ior *ior, const struct hf3fs_iov *iov, bool read, void *ptr,
                  int fd, size_t off, uint64_t len, const void *userdata);
/* cfs_submit_ios: 0 or -errno. */
int hf3fs_submit_ios(const struct hf3fs_ior *ior);
/* cfs_wait_for_ios: completions reaped (>= 0) or -errno. */
int hf3fs_wait_for_ios(const struct hf3fs_ior *ior, struct hf3fs_cqe *cqes, int cqec,
                       int min_results, const struct timespec *abs_timeout);

#ifdef __cplusplus
}
#endif

#endif
