/* hf3fs_usrbio.c - libhf3fs_api_shared: 3FS's USRBIO names over libchainfs
 * (include/hf3fs_usrbio.h). Each function converts the 3FS structs to the
 * chainfs.h call and back; nothing else lives here.
 */
#include "hf3fs_usrbio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "chainfs.h"

bool hf3fs_is_hf3fs(int fd)
{
	return cfs_is_chainfs(fd) != 0;
}

int hf3fs_extract_mount_point(char *hf3fs_mount_point, int size, const char *path)
{
	return cfs_extract_mount_point(hf3fs_mount_point, size, path);
}

static void iov_fill(struct hf3fs_iov *iov, cfs_iov *v, const char *mp, size_t block_size,
                     int numa)
{
	iov->base = cfs_iov_base(v);
	iov->iovh = v;
	memcpy(iov->id, cfs_iov_id(v), sizeof(iov->id));
	snprintf(iov->mount_point, sizeof(iov->mount_point), "%s", mp);
	iov->size = cfs_iov_size(v);
	iov->block_size = block_size;
	iov->numa = numa;
}

int hf3fs_iovcreate(struct hf3fs_iov *iov, const char *hf3fs_mount_point, size_t size,
                    size_t block_size, int numa)
{
	cfs_iov *v;
	if (!iov)
		return -EINVAL;
	int rc = cfs_iov_create(hf3fs_mount_point, size, block_size, numa, &v);
	if (rc < 0)
		return rc;
	iov_fill(iov, v, hf3fs_mount_point, block_size, numa);
	return 0;
}

int hf3fs_iovopen(struct hf3fs_iov *iov, const uint8_t id[16], const char *hf3fs_mount_point,
                  size_t size, size_t block_size, int numa)
{
	cfs_iov *v;
	if (!iov)
		return -EINVAL;
	int rc = cfs_iov_open(hf3fs_mount_point, id, size, block_size, numa, &v);
	if (rc < 0)
		return rc;
	iov_fill(iov, v, hf3fs_mount_point, block_size, numa);
	return 0;
}

void hf3fs_iovunlink(struct hf3fs_iov *iov)
{
	if (iov && iov->iovh)
		cfs_iov_unlink(iov->iovh);
}

void hf3fs_iovdestroy(struct hf3fs_iov *iov)
{
	if (!iov || !iov->iovh)
		return; /* wrapped: not ours to free */
	cfs_iov_destroy(iov->iovh);
	iov->iovh = NULL;
	iov->base = NULL;
}

int hf3fs_iovwrap(struct hf3fs_iov *iov, void *base, const uint8_t id[16],
                  const char *hf3fs_mount_point, size_t size, size_t block_size, int numa)
{
	if (!iov || !base || !id || !hf3fs_mount_point ||
	    strlen(hf3fs_mount_point) >= sizeof(iov->mount_point))
		return -EINVAL;
	iov->base = base;
	iov->iovh = NULL;
	memcpy(iov->id, id, sizeof(iov->id));
	snprintf(iov->mount_point, sizeof(iov->mount_point), "%s", hf3fs_mount_point);
	iov->size = size;
	iov->block_size = block_size;
	iov->numa = numa;
	return 0;
}

size_t hf3fs_ior_size(int entries)
{
	return cfs_ior_size(entries);
}

static int ior_create(struct hf3fs_ior *ior, const char *mp, int entries, bool for_read,
                      int io_depth, int priority, int timeout, int numa, uint64_t flags)
{
	if (!ior || !mp)
		return -EINVAL;
	struct cfs_ior_opts o = {
	    .entries = entries,
	    .for_read = for_read,
	    .io_depth = io_depth,
	    .timeout_ms = timeout,
	    .flags = flags,
	    .priority = priority,
	};
	cfs_ior *r;
	int rc = cfs_ior_create(mp, &o, &r);
	if (rc < 0)
		return rc;
	memset(ior, 0, sizeof(*ior));
	ior->iorh = r;
	ior->iov.size = cfs_ior_size(entries);
	ior->iov.numa = numa;
	snprintf(ior->iov.mount_point, sizeof(ior->iov.mount_point), "%s", mp);
	snprintf(ior->mount_point, sizeof(ior->mount_point), "%s", mp);
	ior->for_read = for_read;
	ior->io_depth = io_depth;
	ior->priority = priority;
	ior->timeout = timeout;
	ior->flags = flags;
	return 0;
}

int hf3fs_iorcreate(struct hf3fs_ior *ior, const char *hf3fs_mount_point, int entries,
                    bool for_read, int io_depth, int numa)
{
	return ior_create(ior, hf3fs_mount_point, entries, for_read, io_depth, 0, 0, numa, 0);
}

int hf3fs_iorcreate2(struct hf3fs_ior *ior, const char *hf3fs_mount_point, int entries,
                     bool for_read, int io_depth, int priority, int numa)
{
	return ior_create(ior, hf3fs_mount_point, entries, for_read, io_depth, priority, 0, numa,
	                  0);
}

int hf3fs_iorcreate3(struct hf3fs_ior *ior, const char *hf3fs_mount_point, int entries,
                     bool for_read, int io_depth, int priority, int timeout, int numa)
{
	return ior_create(ior, hf3fs_mount_point, entries, for_read, io_depth, priority, timeout,
	                  numa, 0);
}

int hf3fs_iorcreate4(struct hf3fs_ior *ior, const char *hf3fs_mount_point, int entries,
                     bool for_read, int io_depth, int timeout, int numa, uint64_t flags)
{
	return ior_create(ior, hf3fs_mount_point, entries, for_read, io_depth, 0, timeout, numa,
	                  flags);
}

void hf3fs_iordestroy(struct hf3fs_ior *ior)
{
	if (!ior || !ior->iorh)
		return;
	cfs_ior_destroy(ior->iorh);
	ior->iorh = NULL;
}

int hf3fs_reg_fd(int fd, uint64_t flags)
{
	(void)flags; /* 3FS ignores them too: code passing 1 must work */
	int rc = cfs_reg_fd(fd, 0);
	return -rc; /* success: -dupfd (<= 0); failure: a positive errno */
}

void hf3fs_dereg_fd(int fd)
{
	cfs_dereg_fd(fd < 0 ? -fd : fd);
}

int hf3fs_io_entries(const struct hf3fs_ior *ior)
{
	if (!ior || !ior->iorh)
		return -EINVAL;
	return cfs_ior_entries(ior->iorh);
}

int hf3fs_prep_io(const struct hf3fs_ior *ior, const struct hf3fs_iov *iov, bool read, void *ptr,
                  int fd, size_t off, uint64_t len, const void *userdata)
{
	if (!ior || !ior->iorh || !iov)
		return -EINVAL;
	return cfs_prep_io(ior->iorh, (const uint8_t *)iov->id, iov->base, iov->size, read, ptr,
	                   fd, off, len, userdata);
}

int hf3fs_submit_ios(const struct hf3fs_ior *ior)
{
	if (!ior || !ior->iorh)
		return -EINVAL;
	return cfs_submit_ios(ior->iorh);
}

int hf3fs_wait_for_ios(const struct hf3fs_ior *ior, struct hf3fs_cqe *cqes, int cqec,
                       int min_results, const struct timespec *abs_timeout)
{
	if (!ior || !ior->iorh || !cqes || cqec <= 0)
		return -EINVAL;
	_Static_assert(sizeof(struct hf3fs_cqe) == sizeof(struct cfs_cqe), "same cqe layout");
	return cfs_wait_for_ios(ior->iorh, (struct cfs_cqe *)cqes, cqec, min_results, abs_timeout);
}
