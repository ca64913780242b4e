/* usrbio_fuse.c - see usrbio_fuse.h. The virtual tree:
 *
 *   /3fs-virt            dr-xr-xr-x root   (not listed in the root)
 *   /3fs-virt/iovs       drwxrwxrwt root   (sticky: a link is removable by
 *                                           its owner only, checked by the
 *                                           kernel and again here)
 *   /3fs-virt/iovs/submit-ios            -> /dev/shm/sem.chainfs-submit-PID
 *   /3fs-virt/iovs/<id>[.suffixes]       -> /dev/shm/<the buffer>, owner's uid
 *
 * Listing iovs shows nothing: names of other users' buffers are not
 * published. Entries and attributes are given with zero cache timeouts, so
 * a name unlinked by one process is free for the next at once.
 */
#include "usrbio/usrbio_fuse.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "meta/schema.h"
#include "usrbio/ring_abi.h"

#define UF_NGROUPS 64

static struct fuse_session *g_se; /* set once by usrbio_fuse_attach */

struct uf_caller {
	struct usrbio_caller c;
	uint32_t g[UF_NGROUPS];
};

static void caller(fuse_req_t req, struct uf_caller *uc)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	uc->c.tid = ctx->pid;
	uc->c.uid = ctx->uid;
	uc->c.gid = ctx->gid;
	uc->c.groups = uc->g;
	uc->c.ngroups = 0;
	if (ctx->uid == 0)
		return;
	gid_t gids[UF_NGROUPS];
	int n = fuse_req_getgroups(req, UF_NGROUPS, gids);
	if (n > UF_NGROUPS)
		n = UF_NGROUPS;
	for (int i = 0; i < n; i++)
		uc->g[i] = gids[i];
	uc->c.ngroups = n > 0 ? (uint32_t)n : 0;
}

static void notify(void *arg, uint64_t ino)
{
	(void)arg;
	if (g_se)
		fuse_lowlevel_notify_inval_inode(g_se, (fuse_ino_t)ino, -1, 0);
}

void usrbio_fuse_attach(struct usrbio *u, struct fuse_session *se)
{
	if (!u)
		return;
	g_se = se;
	usrbio_set_notify(u, notify, NULL);
}

static void fill_attr(fuse_ino_t ino, uint32_t uid, size_t lnk_len, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_nlink = 1;
	st->st_uid = uid;
	if (ino == USRBIO_INO_VIRT) {
		st->st_mode = S_IFDIR | 0555;
	} else if (ino == USRBIO_INO_IOVS) {
		st->st_mode = S_IFDIR | 01777;
	} else {
		st->st_mode = S_IFLNK | 0777;
		st->st_size = (off_t)lnk_len;
	}
	st->st_blksize = 4096;
}

/* Attributes of a virtual inode: 0 or -ENOENT. */
static int attr_of(struct usrbio *u, fuse_ino_t ino, struct stat *st)
{
	if (ino == USRBIO_INO_VIRT || ino == USRBIO_INO_IOVS) {
		fill_attr(ino, 0, 0, st);
		return 0;
	}
	char t[PATH_MAX];
	uint32_t uid;
	if (usrbio_readlink(u, ino, t, sizeof(t), &uid))
		return -ENOENT;
	fill_attr(ino, uid, strlen(t), st);
	return 0;
}

static void reply_entry(fuse_req_t req, fuse_ino_t ino, const struct stat *st, double timeout)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = ino;
	e.generation = 1;
	e.attr = *st;
	e.attr_timeout = timeout;
	e.entry_timeout = timeout;
	fuse_reply_entry(req, &e);
}

int usrbio_fuse_lookup(struct usrbio *u, fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (!u)
		return 0;
	struct stat st;
	if (parent == META_ROOT_INO && !strcmp(name, CFS_VIRT_DIR)) {
		fill_attr(USRBIO_INO_VIRT, 0, 0, &st);
		reply_entry(req, USRBIO_INO_VIRT, &st, 1.0);
		return 1;
	}
	if (parent == USRBIO_INO_VIRT) {
		if (!strcmp(name, CFS_VIRT_IOVS)) {
			fill_attr(USRBIO_INO_IOVS, 0, 0, &st);
			reply_entry(req, USRBIO_INO_IOVS, &st, 1.0);
		} else {
			fuse_reply_err(req, ENOENT);
		}
		return 1;
	}
	if (parent == USRBIO_INO_IOVS) {
		uint64_t vino;
		uint32_t uid;
		if (usrbio_lookup(u, name, &vino, &uid) || attr_of(u, vino, &st)) {
			fuse_reply_err(req, ENOENT);
			return 1;
		}
		reply_entry(req, vino, &st, 0);
		return 1;
	}
	return 0;
}

int usrbio_fuse_getattr(struct usrbio *u, fuse_req_t req, fuse_ino_t ino)
{
	if (!u || !usrbio_is_virtual(ino))
		return 0;
	struct stat st;
	if (attr_of(u, ino, &st))
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_attr(req, &st, 0);
	return 1;
}

int usrbio_fuse_setattr(struct usrbio *u, fuse_req_t req, fuse_ino_t ino)
{
	return usrbio_fuse_deny(u, req, ino); /* no attribute of a link or directory changes */
}

int usrbio_fuse_readlink(struct usrbio *u, fuse_req_t req, fuse_ino_t ino)
{
	if (!u || !usrbio_is_virtual(ino))
		return 0;
	char t[PATH_MAX];
	uint32_t uid;
	if (usrbio_readlink(u, ino, t, sizeof(t), &uid))
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_readlink(req, t);
	return 1;
}

/* Names are made and removed only in the iovs directory: anywhere else
 * replies EPERM and returns 1. */
static int refused_outside_iovs(fuse_req_t req, fuse_ino_t parent)
{
	if (parent == USRBIO_INO_IOVS)
		return 0;
	fuse_reply_err(req, EPERM);
	return 1;
}

int usrbio_fuse_symlink(struct usrbio *u, fuse_req_t req, const char *link, fuse_ino_t parent,
                        const char *name)
{
	if (!u || !usrbio_is_virtual(parent))
		return 0;
	if (refused_outside_iovs(req, parent))
		return 1;
	struct uf_caller uc;
	caller(req, &uc);
	uint64_t vino = 0;
	int rc = usrbio_register(u, &uc.c, name, link, &vino);
	struct stat st;
	if (!rc && attr_of(u, vino, &st))
		rc = -ENOENT; /* unregistered already (its process died) */
	if (rc)
		fuse_reply_err(req, -rc);
	else
		reply_entry(req, vino, &st, 0);
	return 1;
}

int usrbio_fuse_unlink(struct usrbio *u, fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (!u || !usrbio_is_virtual(parent))
		return 0;
	if (refused_outside_iovs(req, parent))
		return 1;
	struct uf_caller uc;
	caller(req, &uc);
	fuse_reply_err(req, -usrbio_unregister(u, &uc.c, name));
	return 1;
}

int usrbio_fuse_deny(struct usrbio *u, fuse_req_t req, fuse_ino_t parent)
{
	if (!u || !usrbio_is_virtual(parent))
		return 0;
	fuse_reply_err(req, EPERM);
	return 1;
}

int usrbio_fuse_opendir(struct usrbio *u, fuse_req_t req, fuse_ino_t ino,
                        struct fuse_file_info *fi)
{
	if (!u || !usrbio_is_virtual(ino))
		return 0;
	if (ino != USRBIO_INO_VIRT && ino != USRBIO_INO_IOVS) {
		fuse_reply_err(req, ENOTDIR);
		return 1;
	}
	fi->fh = 0;
	fuse_reply_open(req, fi);
	return 1;
}

/* Adds one entry (plain or plus format) at position OFF+1. */
static size_t add_ent(fuse_req_t req, int plus, char *buf, size_t cap, const char *name,
                      fuse_ino_t ino, off_t next)
{
	struct stat st;
	memset(&st, 0, sizeof(st));
	st.st_ino = ino;
	st.st_mode = S_IFDIR;
	if (!plus)
		return fuse_add_direntry(req, buf, cap, name, &st, next);
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.attr = st; /* nodeid 0: the kernel looks the name up when it needs it */
	return fuse_add_direntry_plus(req, buf, cap, name, &e, next);
}

int usrbio_fuse_readdir(struct usrbio *u, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        int plus)
{
	if (!u || !usrbio_is_virtual(ino))
		return 0;
	char buf[1024];
	size_t used = 0, n;
	if (size > sizeof(buf))
		size = sizeof(buf);
	struct {
		const char *name;
		fuse_ino_t ino;
	} ents[3] = {{".", ino},
	             {"..", ino == USRBIO_INO_VIRT ? META_ROOT_INO : USRBIO_INO_VIRT},
	             {CFS_VIRT_IOVS, USRBIO_INO_IOVS}};
	int count = ino == USRBIO_INO_VIRT ? 3 : 2;
	for (int i = (int)(off < 0 ? 0 : off); i < count; i++) {
		n = add_ent(req, plus, buf + used, size - used, ents[i].name, ents[i].ino, i + 1);
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	return 1;
}

int usrbio_fuse_releasedir(struct usrbio *u, fuse_req_t req, fuse_ino_t ino)
{
	if (!u || !usrbio_is_virtual(ino))
		return 0;
	fuse_reply_err(req, 0);
	return 1;
}

int usrbio_fuse_xattr(struct usrbio *u, fuse_req_t req, fuse_ino_t ino, int list, size_t size)
{
	if (!u || !usrbio_is_virtual(ino))
		return 0;
	if (list && size == 0)
		fuse_reply_xattr(req, 0);
	else if (list)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_err(req, ENODATA);
	return 1;
}

int usrbio_fuse_access(struct usrbio *u, fuse_req_t req, fuse_ino_t ino)
{
	if (!u || !usrbio_is_virtual(ino))
		return 0;
	fuse_reply_err(req, 0);
	return 1;
}

int usrbio_fuse_ioctl(struct usrbio *u, fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
                      int open_flags, const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	if (cmd == CFS_IOC_GET_MAGIC) {
		uint32_t magic = CFS_SUPER_MAGIC;
		if (out_bufsz < sizeof(magic))
			fuse_reply_err(req, EINVAL);
		else
			fuse_reply_ioctl(req, 0, &magic, sizeof(magic));
		return 1;
	}
	if (cmd != CFS_IOC_REG && cmd != CFS_IOC_DEREG) {
		fuse_reply_err(req, ENOTTY);
		return 1;
	}
	if (!u) {
		fuse_reply_err(req, EOPNOTSUPP);
		return 1;
	}
	if (usrbio_is_virtual(ino)) {
		fuse_reply_err(req, EINVAL);
		return 1;
	}
	struct uf_caller uc;
	caller(req, &uc);
	if (cmd == CFS_IOC_REG) {
		struct cfs_ioc_reg a;
		if (in_bufsz < sizeof(a) || out_bufsz < sizeof(a)) {
			fuse_reply_err(req, EINVAL);
			return 1;
		}
		memcpy(&a, in_buf, sizeof(a));
		if (a.flags) {
			fuse_reply_err(req, EINVAL);
			return 1;
		}
		int rc = usrbio_reg_fd(u, &uc.c, ino, open_flags, &a.reg, &a.mode);
		if (rc)
			fuse_reply_err(req, -rc);
		else
			fuse_reply_ioctl(req, 0, &a, sizeof(a));
		return 1;
	}
	uint32_t reg;
	if (in_bufsz < sizeof(reg)) {
		fuse_reply_err(req, EINVAL);
		return 1;
	}
	memcpy(&reg, in_buf, sizeof(reg));
	int rc = usrbio_dereg_fd(u, &uc.c, reg);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_ioctl(req, 0, NULL, 0);
	return 1;
}
