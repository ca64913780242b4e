/* usrbio_fuse.h - the FUSE side of the ring server: the hidden virtual
 * directory <mount>/3fs-virt/iovs and the registration ioctls, as libfuse
 * low-level handlers. fuse_fs.c calls each hook first in the matching
 * operation; a hook returns 1 when it answered the request (the inode or
 * name is ours), 0 when the operation is the file system's. Every hook
 * accepts U == NULL (a mount without rings) and then returns 0.
 *
 * Threads: any FUSE session thread.
 */
#ifndef CFS_USRBIO_USRBIO_FUSE_H
#define CFS_USRBIO_USRBIO_FUSE_H

#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

#include "usrbio/usrbio.h"

/* Lets the server invalidate cached attributes through SE (file lengths
 * grown by ring writes). Call once the session exists. */
void usrbio_fuse_attach(struct usrbio *u, struct fuse_session *se);

int usrbio_fuse_lookup(struct usrbio *u, fuse_req_t req, fuse_ino_t parent, const char *name);
int usrbio_fuse_getattr(struct usrbio *u, fuse_req_t req, fuse_ino_t ino);
int usrbio_fuse_setattr(struct usrbio *u, fuse_req_t req, fuse_ino_t ino);
int usrbio_fuse_readlink(struct usrbio *u, fuse_req_t req, fuse_ino_t ino);
int usrbio_fuse_symlink(struct usrbio *u, fuse_req_t req, const char *link, fuse_ino_t parent,
                        const char *name);
int usrbio_fuse_unlink(struct usrbio *u, fuse_req_t req, fuse_ino_t parent, const char *name);
/* Creation, rename and the like inside the virtual directory: EPERM. */
int usrbio_fuse_deny(struct usrbio *u, fuse_req_t req, fuse_ino_t parent);
int usrbio_fuse_opendir(struct usrbio *u, fuse_req_t req, fuse_ino_t ino,
                        struct fuse_file_info *fi);
/* PLUS: readdirplus format. */
int usrbio_fuse_readdir(struct usrbio *u, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        int plus);
int usrbio_fuse_releasedir(struct usrbio *u, fuse_req_t req, fuse_ino_t ino);
/* getxattr (LIST 0: ENODATA) and listxattr (LIST 1: empty) on virtual inodes. */
int usrbio_fuse_xattr(struct usrbio *u, fuse_req_t req, fuse_ino_t ino, int list, size_t size);
int usrbio_fuse_access(struct usrbio *u, fuse_req_t req, fuse_ino_t ino);
/* The ring ioctls on a file of the mount (CFS_IOC_*); OPEN_FLAGS are the
 * open(2) flags of the handle the ioctl came through. Handles other
 * commands with ENOTTY; on a virtual inode too. */
int usrbio_fuse_ioctl(struct usrbio *u, fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
                      int open_flags, const void *in_buf, size_t in_bufsz, size_t out_bufsz);

#endif
