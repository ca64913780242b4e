/* fuse_fs.c - libfuse3 low-level operations over meta_client and file_io.
 *
 * HOW IT WORKS. Each operation handler builds the caller's credentials
 * (fuse_req_ctx, plus the groups of non-root callers: "Caller groups"),
 * makes one blocking meta_client call and replies. Meta checks permissions with
 * those credentials, and the kernel checks them as well (mount option
 * default_permissions): without it, a path walk through names the kernel
 * cached for another user would skip the search-permission check.
 * Kernel inode numbers are meta
 * inode ids; nothing is kept per lookup, so forget is a no-op. Attributes
 * carry attr_timeout, names entry_timeout, and ENOENT lookups are answered
 * as negative entries cached negative_timeout; names may be cached long
 * because dircache.c tracks them and has the kernel drop those of a
 * directory another client changed (within one poll, 100 ms by default).
 *
 * Files: open/create make a struct fusefs_file (fi->fh) holding the meta
 * write session (0 for read-only opens without O_TRUNC) and a reference
 * on the inode's file_io state, which all opens of that inode share.
 * Files are opened direct_io (no page cache; each read or write is one
 * request of up to 1 MiB) unless keep_cache_ro and the open is
 * read-only, or the open is a read-only one of an inline file that came
 * with its bytes ("Cached inline reads"). A write is
 * answered once every replica has it durable, unless the mount enables
 * write-behind (--write-behind, off by default, because a write(2) that
 * returned must survive a crash of the mount process): then the reply
 * comes once the data is copied and queued, so one writer keeps several
 * chunk writes in flight; flush (every close(2)) and fsync wait for them
 * and return a failed one's error, as NFS does. O_SYNC / O_DSYNC handles
 * always write through.
 * The written length goes to meta on flush, fsync, periodically (file_io)
 * and in the session close at release. O_APPEND writes take the inode's
 * append lock and write at file_io_size, synchronously.
 *
 * Directories: opendir makes a struct fusefs_dir that accumulates the
 * listing page by page (meta readdir resumes after a name; kernel readdir
 * offsets are positions: 0 ".", 1 "..", k+2 the k-th entry). readdirplus
 * gives the first readdirplus_attrs entries of a handle full attributes;
 * the rest go without (nodeid 0), so huge directories cost one meta call
 * per 1024 names, not one per name.
 *
 * Directory st_nlink is meta's: 2 + the number of subdirectories, kept
 * exact by mkdir, rmdir and rename (find(1)'s leaf optimisation relies on
 * it). The kernel drops its cached attributes of a parent on every entry
 * change it makes, so the parent's new nlink and times are fetched again.
 */
#define FUSE_USE_VERSION 312
#include "fuse/fuse_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse3/fuse_lowlevel.h>
#include <linux/falloc.h>
#include <linux/fuse.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/file.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/iobuf.h"
#include "common/log.h"
#include "common/status.h"
#include "fuse/closer.h"
#include "fuse/dircache.h"
#include "fuse/fuse_loop.h"
#include "fuse/fuse_uring.h"
#include "fuse/lookahead.h"
#include "meta/acl.h"
#include "usrbio/ring_abi.h"
#include "usrbio/usrbio_fuse.h"

#define FUSEFS_MAX_IO  (1u << 20) /* max_read / max_write */
#define FUSEFS_NGROUPS 64
#define FUSEFS_PAGE    1024 /* meta readdir page */
/* How long a deferred session close waits for others to share its meta
 * call (closer.h): at ~3k creates/s a call fills (48 sessions) in 16 ms;
 * at 300/s (a sanitizer build on a loaded machine) it ends ~15. The cost
 * of the wait: an unlinked file leaves the GC queue up to this much later. */
#define FUSEFS_CLOSE_WINDOW_MS 50

struct fusefs_file;
struct fusefs_dir;

struct fusefs {
	struct fusefs_opts o;
	struct fuse_session *se;   /* for attribute invalidations */
	dircache *dc;              /* tracked names (dircache.h); NULL: no poll */
	lookahead *la;             /* lookup-ahead batches (lookahead.h); NULL: off */
	struct wa_pool *wa;        /* walk-ahead fetchers ("Walk-ahead"); NULL: off */
	closer *closer;            /* deferred session closes (closer.h); NULL: synchronous */
	_Atomic uint64_t init_unique; /* request id of the kernel's INIT (mmap_io_*) */
	furing *ring;              /* requests over io_uring (fuse_uring.h); NULL: off */
	/* Unmount guard (guard_main): this mount's fusectl abort file ("":
	 * unknown), and done once the poll and the workers stopped. */
	char conn_abort[80];
	pthread_t guard;
	int guard_started, guard_done;
	_Atomic int aborted; /* the guard aborted the connection */
	pthread_mutex_t guard_mu;
	pthread_cond_t guard_cv;
	pthread_mutex_t lock;      /* guards the two handle lists */
	struct fusefs_file *files; /* open file handles, for cleanup at unmount */
	struct fusefs_dir *dirs;   /* open directory handles, likewise */
	/* Files with lk_owners recorded: changed under lock, read without it
	 * by the close path (lk_none). */
	_Atomic size_t nlk_files;
	int acl;                   /* the kernel enforces POSIX ACLs ("ACLs") */
	pthread_mutex_t acl_lock;  /* guards acl_none, acc_none and acc_gen */
	struct acl_none_slot {     /* directories known to have no default ACL */
		uint64_t ino;
		uint64_t until_ns; /* mono clock */
		uint64_t gen;      /* dircache generation before the read */
	} acl_none[256];
	struct acc_none_slot { /* inodes known to have no access ACL */
		uint64_t ino;
		uint64_t until_ns; /* mono clock: read start + attr_timeout */
	} acc_none[256];
	uint64_t acc_gen;           /* bumped when this mount sets an access ACL */
	/* Supplementary groups of recent callers ("Caller groups"):
	 * FUSEFS_GRP_SLOTS, hashed by the caller's thread id; NULL: off
	 * (every non-root request reads /proc). */
	pthread_mutex_t grp_lock; /* guards grp */
	struct grp_slot *grp;
	uint64_t grp_ttl_ns;
	unsigned test_acc_set_delay_ms; /* tests only: an access ACL set waits this
	                                 * long before meta
	                                 * (CFS_FUSE_TEST_ACL_SET_DELAY_MS) */
	pthread_mutex_t dattr_lock; /* guards dattr_gen and dattr */
	uint64_t dattr_gen;         /* bumped by every change that may alter a directory */
	int dattr_files; /* a file's attributes may be in dattr (dattr_forget_files_locked) */
	struct dattr_slot {         /* attributes from CREATE_DIR / UNLINK_DIR / inline writes */
		uint64_t ino;       /* 0: empty */
		uint64_t ops;       /* calls that began on an inode of this slot */
		uint64_t until_ns;  /* mono clock: read at meta + attr_timeout */
		struct stat st;
	} dattr[256];
	/* Open-ahead (see there): when read-only opens of inline files went
	 * to meta last (mono ns), whether meta knows LOOKUP_PLUSD, and which
	 * name a lookup-ahead batch last answered for an inode. */
	_Atomic uint64_t oa_want_ns;
	_Atomic int oa_off;
	pthread_mutex_t oa_lock; /* guards oa */
	struct oa_slot *oa;      /* FUSEFS_OA_SLOTS, hashed by inode */
	/* Page-cache opens of inline files (op_open, "Cached inline reads"):
	 * how many are open (guarded by lock), and the sweeper that ends
	 * their cached pages within read_ahead_ttl_ms. */
	size_t npc;
	size_t nwr; /* writable handles open (guarded by lock) */
	pthread_t pc_thread;
	int pc_started;
	_Atomic int pc_stop, pc_done;
};

#define FUSEFS_OA_SLOTS 1024
struct oa_slot {
	uint64_t ino, parent; /* ino 0: empty */
	char name[META_NAME_MAX + 1];
	/* The kernel's attributes of INO are those a lookup-ahead batch read
	 * at TOLD_NS gave (the lookup's reply; no other attribute reply for
	 * INO since): "Cached inline reads" may then fill its pages. */
	int told;
	uint64_t told_ns;
};

#define FUSEFS_GRP_SLOTS 256
#define FUSEFS_GRP_TTL_MS 100 /* default of CFS_FUSE_GROUPS_TTL_MS */
struct grp_slot {
	uint32_t pid, uid, gid; /* the caller's thread id, fsuid, fsgid; pid 0: empty */
	uint32_t n;
	uint64_t until_ns; /* mono clock: read start + grp_ttl_ns */
	uint32_t g[FUSEFS_NGROUPS];
};

struct fusefs_file {
	struct fusefs_file *prev, *next; /* fusefs.files; guarded by fusefs.lock */
	uint64_t ino;
	uint64_t session;  /* meta write session; 0 for read-only opens without O_TRUNC */
	int flags;         /* open(2) flags */
	uint32_t mode;     /* permission bits at open (set-id bits to drop on write) */
	int privs_killed;  /* set-id bits dropped through this handle */
	file_io_inode *fi; /* shared open state; NULL without file_io */
	uint64_t size_ns;  /* mono ns the size last came from meta (open, read at EOF) */
	/* Opened with the page cache (op_open, "Cached inline reads"): the
	 * bytes its pages may hold were read from meta at pc_ns or later
	 * (mono ns; guarded by fusefs.lock). */
	int pc;
	uint64_t pc_ns;
	/* Lock owners that took locks through this handle (see "Locks");
	 * guarded by fusefs.lock. */
	uint64_t *lk_owners;
	size_t nlk, lk_cap;
};

struct fusefs_dirent {
	uint64_t ino;
	uint8_t type;
	char *name;
};

struct fusefs_dir {
	struct fusefs_dir *prev, *next; /* fusefs.dirs; guarded by fusefs.lock */
	pthread_mutex_t lock;           /* the kernel may read one handle from two threads */
	uint64_t ino;
	uint64_t parent;
	uint64_t gen; /* dc_begin before the listing was read */
	struct fusefs_dirent *e;
	size_t n, cap;
	int eof;
};

struct cred_buf {
	struct meta_cred c;
	uint32_t g[FUSEFS_NGROUPS];
};

static struct fusefs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ---- Caller groups ----
 *
 * Meta checks each request's permissions with the caller's supplementary
 * groups, which FUSE does not carry: libfuse reads them from
 * /proc/PID/task/PID/status, about 20 us of the mount's CPU per request
 * (the kernel formats the whole status file), three times per create of a
 * non-root caller (lookup, getattr of the directory, create). The groups
 * read for a caller thread are kept here for grp_ttl_ns
 * (CFS_FUSE_GROUPS_TTL_MS, 100 ms by default; 0: off) from the start of
 * the read, keyed by the thread id and the request's fsuid and fsgid, in
 * FUSEFS_GRP_SLOTS slots (one per thread-id hash, the last read wins):
 *   - setgroups(2) in a process whose fsuid and fsgid stay the same
 *     reaches meta's checks within the TTL (the kernel's own checks,
 *     default_permissions, see it at once): a group gained may be refused
 *     by meta, or a set-group-ID bit dropped by a write, for up to 100 ms
 *     after it; a group given up is refused by the kernel at once.
 *     su, login, newgrp and sg change the fsuid or fsgid, which is a miss.
 *   - A thread id names another thread only once the pid space wrapped
 *     (Linux hands pids out cyclically): with pid_max 32768 that needs
 *     more than 300,000 new tasks a second to happen within the TTL, and
 *     the new thread must have the same fsuid and fsgid on top.
 * Root (fsuid 0) needs no groups and is never looked up. */
static void grp_read(fuse_req_t req, struct cred_buf *cb)
{
	gid_t gids[FUSEFS_NGROUPS];
	int n = fuse_req_getgroups(req, FUSEFS_NGROUPS, gids);
	if (n > FUSEFS_NGROUPS)
		n = FUSEFS_NGROUPS;
	for (int i = 0; i < n; i++)
		cb->g[i] = gids[i];
	cb->c.ngroups = n > 0 ? (uint32_t)n : 0;
}

static void req_cred(fuse_req_t req, struct cred_buf *cb)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	cb->c.uid = ctx->uid;
	cb->c.gid = ctx->gid;
	cb->c.ngroups = 0;
	cb->c.groups = cb->g;
	if (ctx->uid == 0)
		return; /* root passes every check meta makes with groups */
	struct fusefs *fs = fs_of(req);
	uint32_t pid = (uint32_t)ctx->pid;
	if (!fs->grp || !pid) {
		grp_read(req, cb);
		return;
	}
	struct grp_slot *sl = &fs->grp[(pid * 0x9E3779B1u) >> 24];
	uint64_t now = clock_mono_ns();
	pthread_mutex_lock(&fs->grp_lock);
	if (sl->pid == pid && sl->uid == ctx->uid && sl->gid == ctx->gid && sl->until_ns > now) {
		cb->c.ngroups = sl->n;
		memcpy(cb->g, sl->g, sl->n * sizeof(cb->g[0]));
		pthread_mutex_unlock(&fs->grp_lock);
		return;
	}
	pthread_mutex_unlock(&fs->grp_lock);
	gid_t gids[FUSEFS_NGROUPS];
	int n = fuse_req_getgroups(req, FUSEFS_NGROUPS, gids);
	if (n < 0)
		return; /* no groups (the caller is gone): not kept */
	if (n > FUSEFS_NGROUPS)
		n = FUSEFS_NGROUPS;
	for (int i = 0; i < n; i++)
		cb->g[i] = gids[i];
	cb->c.ngroups = (uint32_t)n;
	pthread_mutex_lock(&fs->grp_lock);
	sl->pid = pid;
	sl->uid = ctx->uid;
	sl->gid = ctx->gid;
	sl->n = (uint32_t)n;
	sl->until_ns = now + fs->grp_ttl_ns;
	memcpy(sl->g, cb->g, (size_t)n * sizeof(cb->g[0]));
	pthread_mutex_unlock(&fs->grp_lock);
}

/* 1 for the errnos of a socket or connection. They end a meta or storage
 * call only when its retries ran out (meta_client waits up to its bound,
 * --meta-wait-ms), and an application must not see them: a file system
 * call fails with EIO then (issue 16: fsync and close once returned
 * ECONNREFUSED while meta restarted). */
static int transport_errno(int e)
{
	switch (e) {
	case ECONNREFUSED:
	case ECONNRESET:
	case ECONNABORTED:
	case EPIPE:
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN:
	case ENETDOWN:
	case ENETRESET:
	case ENOTCONN:
	case EADDRNOTAVAIL:
	case ESHUTDOWN:
	case ENOTSOCK:
	case EPROTO:
		return 1;
	}
	return 0;
}

/* 1 when RC says the cluster did not answer within the retry bound (what
 * to_errno turns into EIO with its warning), as opposed to an answer. */
static int no_answer(int rc)
{
	int e = rc < 0 ? -rc : rc;
	return (e < CFS_EBASE && transport_errno(e)) || e == CFS_ETIMEDOUT || e == CFS_ECLOSED ||
	       e == CFS_EUNAVAIL || e == CFS_EFENCED;
}

/* A meta / storage status as the errno an application should see. */
static int to_errno(int rc)
{
	int e = rc < 0 ? -rc : rc;
	if (e == 0)
		return 0;
	if (e < CFS_EBASE && !transport_errno(e))
		return e;
	if (e < CFS_EBASE || e == CFS_ETIMEDOUT || e == CFS_ECLOSED || e == CFS_EUNAVAIL ||
	    e == CFS_EFENCED) {
		LOG_WARN("fuse", "no answer from the cluster within the retry bound (%s): EIO",
		         cfs_strerror(-e));
		return EIO;
	}
	switch (e) {
	case CFS_ELAYOUT:
		return EINVAL;
	case CFS_ETOOLARGE:
		return EFBIG;
	case CFS_EAUTH:
		return EACCES;
	default: /* unavailable, fenced, closed, corrupt: the retries ran out */
		return EIO;
	}
}

static void reply_err(fuse_req_t req, int rc)
{
	fuse_reply_err(req, to_errno(rc));
}

/* For an operation addressed by inode (getattr, open): meta's ENOENT means
 * the inode is gone while the kernel still had a name cached for it
 * (another mount removed or replaced it within entry_timeout). ESTALE
 * makes the VFS walk the path again with a fresh lookup (LOOKUP_REVAL)
 * instead of failing the call, so the name resolves to what exists now. */
static void reply_ino_err(fuse_req_t req, int rc)
{
	fuse_reply_err(req, rc == -ENOENT ? ESTALE : to_errno(rc));
}

static mode_t type_bits(uint8_t type)
{
	switch (type) {
	case META_T_DIR:
		return S_IFDIR;
	case META_T_SYMLINK:
		return S_IFLNK;
	case META_T_FIFO:
		return S_IFIFO;
	case META_T_CHR:
		return S_IFCHR;
	case META_T_BLK:
		return S_IFBLK;
	case META_T_SOCK:
		return S_IFSOCK;
	default:
		return S_IFREG;
	}
}

static void oa_untold(struct fusefs *fs, uint64_t ino);

/* FI: IN's open state when the caller holds a reference to it (a create's
 * new handle), else NULL: looked up here. */
static void fill_stat_fi(struct fusefs *fs, const struct meta_inode *in, file_io_inode *fi,
                         struct stat *st)
{
	/* These attributes may reach the kernel. Open-ahead records files
	 * only (oa_note): a directory's (every create's and unlink's parent,
	 * dattr_put) has no slot to clear. */
	if (in->type == META_T_FILE)
		oa_untold(fs, in->ino);
	memset(st, 0, sizeof(*st));
	st->st_ino = in->ino;
	st->st_mode = type_bits(in->type) | (in->mode & 07777);
	st->st_nlink = in->nlink;
	st->st_uid = in->uid;
	st->st_gid = in->gid;
	st->st_rdev = (dev_t)in->rdev;
	st->st_size = (off_t)in->size;
	if (in->type == META_T_FILE && fs->o.fio) {
		file_io_inode *found = fi ? NULL : file_io_find(fs->o.fio, in->ino);
		if (fi || found) {
			uint64_t s = file_io_size(fi ? fi : found);
			if (s > in->size)
				st->st_size = (off_t)s;
			file_io_release(fs->o.fio, found);
		}
	}
	st->st_blksize = 1 << 20;
	if (in->type == META_T_FILE && in->has_layout && in->layout.chunk_size < (1u << 20))
		st->st_blksize = in->layout.chunk_size;
	st->st_blocks = (blkcnt_t)(((uint64_t)st->st_size + 511) / 512);
	st->st_atim.tv_sec = in->atime / 1000000000;
	st->st_atim.tv_nsec = in->atime % 1000000000;
	st->st_mtim.tv_sec = in->mtime / 1000000000;
	st->st_mtim.tv_nsec = in->mtime % 1000000000;
	st->st_ctim.tv_sec = in->ctime / 1000000000;
	st->st_ctim.tv_nsec = in->ctime % 1000000000;
}

static void fill_stat(struct fusefs *fs, const struct meta_inode *in, struct stat *st)
{
	fill_stat_fi(fs, in, NULL, st);
}

/* ---- name caching (dircache.h) ----
 *
 * Names go to the kernel with entry_timeout and absent names with
 * negative_timeout while the directory-count poll works; without it (no
 * poll, or polls failing) at most 1 s and not at all, as a mount that
 * cannot learn about other clients' changes must. dc_begin before the meta
 * call that reads an entry, dc_note after it (0: cache it not at all),
 * own_begin/own_end around a call that changes the directory exactly
 * once when it succeeds. */

#define FUSEFS_UNPOLLED_ENTRY_TTL 1.0

static double entry_ttl(struct fusefs *fs)
{
	if (dircache_healthy(fs->dc) || fs->o.entry_timeout <= FUSEFS_UNPOLLED_ENTRY_TTL)
		return fs->o.entry_timeout;
	return FUSEFS_UNPOLLED_ENTRY_TTL;
}

static double negative_ttl(struct fusefs *fs)
{
	return dircache_healthy(fs->dc) ? fs->o.negative_timeout : 0;
}

static uint64_t dc_begin(struct fusefs *fs, uint64_t parent)
{
	return fs->dc ? dircache_begin(fs->dc, parent) : 0;
}

static int dc_note(struct fusefs *fs, uint64_t parent, const char *name, uint64_t gen)
{
	return fs->dc ? dircache_note(fs->dc, parent, name, gen) : 1;
}

/* Before a meta call in a fast opcode's handler (fuse_loop.h): hands the
 * FUSE reading over, unless the mount runs a metadata instance in its
 * process (meta_local.h). Then a call it answers at once keeps the
 * reading thread, and the meta client (before an RPC) and the KV store
 * (before a writer lock, commit or fsync wait) hand over themselves, from
 * the block hint every FUSE thread sets (block_hint.h). */
static void meta_will_block(struct fusefs *fs)
{
	if (!meta_client_has_local(fs->o.meta))
		fuseloop_will_block();
}

static void own_begin(struct fusefs *fs)
{
	if (fs->dc)
		dircache_own_begin(fs->dc);
}

/* RC: the meta call's result; 0 counts one change of PARENT, which added
 * NAME (ADD) or removed it (ADD -1: a file unlink, whose other effects the
 * caller handled). */
static void la_changed(struct fusefs *fs);

static void own_end(struct fusefs *fs, uint64_t parent, const char *name, int rc, int add)
{
	/* A file unlink is known exactly: lookup-ahead batches that do not
	 * hold it go on answering (rm -r, a delete after a cache drop: else
	 * every unlink's lookup refetched a batch of LOOKAHEAD_BATCH). */
	if (rc == 0 && add < 0 && fs->la)
		lookahead_unlinked(fs->la, parent, name);
	else
		la_changed(fs);
	if (fs->dc)
		dircache_own_end(fs->dc, parent, name, rc ? 0 : add > 0 ? 1 : -1);
}

/* ---- Directory attributes ----
 *
 * After every entry change it makes (create, unlink, ...) the kernel drops
 * the parent's cached attributes and, at the next permission check
 * (default_permissions), asks for them again: one GETATTR round trip per
 * create or unlink. CREATE_DIR and UNLINK_DIR return the parent's
 * attributes read right after the change committed; they are kept here
 * and answer that GETATTR, with the rest of attr_timeout counted from when
 * meta read them: the bound the kernel's own attribute cache gives, so two
 * mounts stay as coherent as before (README "Durability of metadata").
 * A copy is stored only when no other create/unlink on a directory of the
 * same slot started meanwhile (so an older snapshot never replaces a
 * newer one) and no other change of this mount that may alter a
 * directory (mkdir, rmdir, rename, link, symlink, mknod, setattr, xattrs,
 * an entry change without a directory reply) completed meanwhile: those
 * empty the table (dattr_drop_all) after they commit.
 *
 * Files take part the same way: the kernel drops a file's attributes
 * after each write and asks at the next fstat, so a write served inline
 * keeps the inode meta returned with it. Any other write of the file
 * (chunks, which meta learns about later) forgets it (dattr_forget), as
 * do a conversion to chunks, a granted lock, an open with O_TRUNC and a
 * create that found the file (dattr_invalidate); an unlink forgets every
 * file's (link counts); setattr, fallocate, link and rename empty the
 * table. */

static struct dattr_slot *dattr_slot_of(struct fusefs *fs, uint64_t ino)
{
	return &fs->dattr[(ino * 0x9E3779B97F4A7C15ull) >> 56];
}

/* Before a CREATE_DIR / UNLINK_DIR on DIR: the state dattr_put checks. */
struct dattr_ticket {
	uint64_t ops, gen;
	uint64_t start_ns; /* mono clock before the call: meta reads later */
};

static struct dattr_ticket dattr_begin(struct fusefs *fs, uint64_t dir)
{
	struct dattr_ticket t;
	pthread_mutex_lock(&fs->dattr_lock);
	struct dattr_slot *sl = dattr_slot_of(fs, dir);
	t.ops = ++sl->ops;
	t.gen = fs->dattr_gen;
	pthread_mutex_unlock(&fs->dattr_lock);
	t.start_ns = clock_mono_ns();
	return t;
}

static void dattr_drop_all(struct fusefs *fs)
{
	la_changed(fs);
	pthread_mutex_lock(&fs->dattr_lock);
	fs->dattr_gen++;
	for (size_t i = 0; i < sizeof(fs->dattr) / sizeof(fs->dattr[0]); i++)
		fs->dattr[i].ino = 0;
	fs->dattr_files = 0;
	pthread_mutex_unlock(&fs->dattr_lock);
}

/* After the call that began with T: keeps IN (the parent directory DIR
 * as meta read it after the change; ino 0: meta gave none) when T still
 * holds; otherwise forgets the slot. A change without a reply (ino 0)
 * empties the table, as any other directory change of this mount does. */
static void dattr_forget_files_locked(struct fusefs *fs);

/* FILES: an unlink's (dattr_forget_files_locked in the same hold). */
static void dattr_put(struct fusefs *fs, uint64_t dir, struct dattr_ticket t,
                      const struct meta_inode *in, int files)
{
	if (in->ino != dir || (in->type != META_T_DIR && in->type != META_T_FILE) ||
	    fs->o.attr_timeout <= 0) {
		dattr_drop_all(fs); /* files' entries too */
		return;
	}
	struct stat st;
	fill_stat(fs, in, &st);
	uint64_t until = t.start_ns + (uint64_t)(fs->o.attr_timeout * 1e9);
	pthread_mutex_lock(&fs->dattr_lock);
	struct dattr_slot *sl = dattr_slot_of(fs, dir);
	if (sl->ops == t.ops && fs->dattr_gen == t.gen) {
		sl->ino = dir;
		sl->until_ns = until;
		sl->st = st;
		if (!S_ISDIR(st.st_mode))
			fs->dattr_files = 1;
	} else {
		sl->ino = 0;
	}
	if (files)
		dattr_forget_files_locked(fs);
	pthread_mutex_unlock(&fs->dattr_lock);
}

/* Empties INO's slot if it holds INO (a change of the file this table
 * cannot describe, such as a chunk write, has landed). */
static void dattr_forget(struct fusefs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->dattr_lock);
	struct dattr_slot *sl = dattr_slot_of(fs, ino);
	if (sl->ino == ino)
		sl->ino = 0;
	pthread_mutex_unlock(&fs->dattr_lock);
}

/* After a change of file INO this table cannot describe (an open with
 * O_TRUNC, a create that found the file): forgets its attributes and
 * fails any keep of them still in flight (its ticket). */
static void dattr_invalidate(struct fusefs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->dattr_lock);
	struct dattr_slot *sl = dattr_slot_of(fs, ino);
	sl->ops++;
	if (sl->ino == ino)
		sl->ino = 0;
	pthread_mutex_unlock(&fs->dattr_lock);
}

/* After an unlink: some file's link count and ctime changed, and which
 * file is not known here. Directories' entries stay (their own replies
 * keep them right); keeps in flight fail. The table is walked only when
 * a file's entry was stored since the last walk (a delete-only load
 * stores directories' alone). */
static void dattr_forget_files_locked(struct fusefs *fs) /* dattr_lock held */
{
	fs->dattr_gen++;
	for (size_t i = 0; fs->dattr_files && i < sizeof(fs->dattr) / sizeof(fs->dattr[0]); i++)
		if (fs->dattr[i].ino && !S_ISDIR(fs->dattr[i].st.st_mode))
			fs->dattr[i].ino = 0;
	fs->dattr_files = 0;
}


/* 1 and *ST, *TTL (seconds left) when directory INO's attributes are
 * kept and still within attr_timeout of when meta read them. */
static int dattr_get(struct fusefs *fs, uint64_t ino, struct stat *st, double *ttl)
{
	int hit = 0;
	uint64_t now = clock_mono_ns();
	pthread_mutex_lock(&fs->dattr_lock);
	struct dattr_slot *sl = dattr_slot_of(fs, ino);
	if (sl->ino == ino && now < sl->until_ns) {
		*st = sl->st;
		*ttl = (double)(sl->until_ns - now) / 1e9;
		hit = 1;
	}
	pthread_mutex_unlock(&fs->dattr_lock);
	return hit;
}

/* FI as for fill_stat_fi. */
static void fill_entry_fi(struct fusefs *fs, const struct meta_inode *in, file_io_inode *fi,
                          struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = in->ino;
	e->generation = 1;
	e->attr_timeout = fs->o.attr_timeout;
	e->entry_timeout = entry_ttl(fs);
	fill_stat_fi(fs, in, fi, &e->attr);
}

static void fill_entry(struct fusefs *fs, const struct meta_inode *in, struct fuse_entry_param *e)
{
	fill_entry_fi(fs, in, NULL, e);
}

/* CACHE: 0 when the name must not stay in the kernel's cache (dc_note). */
static void reply_entry_c(fuse_req_t req, const struct meta_inode *in, int cache)
{
	struct fuse_entry_param e;
	fill_entry(fs_of(req), in, &e);
	if (!cache)
		e.entry_timeout = 0;
	fuse_reply_entry(req, &e);
}

/* INODE RECORDS. A struct meta_inode is 5 KiB (the symlink target), past
 * glibc's thread cache and small bins: each malloc of one went through
 * _int_malloc's large-bin path and first consolidated the fast bins
 * (malloc_consolidate), each free through _int_free's locked path. The
 * requests of every create (LOOKUP, CREATE, GETATTR of the parent) and
 * every unlink keep theirs on the stack instead: FUSE requests run on
 * fuse_loop.c's threads (default attributes: glibc gives them the
 * process's stack limit, 8 MiB by default, 2 MiB when unlimited), and
 * meta's in-process calls below them keep their large state on the heap.
 * The other handlers allocate, as before. */
static struct meta_inode *inode_new(fuse_req_t req)
{
	struct meta_inode *in = malloc(sizeof(*in));
	if (!in)
		fuse_reply_err(req, ENOMEM);
	return in;
}

static void want_if_capable(struct fuse_conn_info *conn, unsigned cap)
{
	if (conn->capable & cap)
		conn->want |= cap;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fusefs *fs = userdata;
	/* POSIX ACLs: the kernel enforces them; umask and default ACLs at
	 * create are ours ("ACLs"). */
	if ((conn->capable & FUSE_CAP_POSIX_ACL) && (conn->capable & FUSE_CAP_DONT_MASK)) {
		conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
		fs->acl = 1;
	}
	want_if_capable(conn, FUSE_CAP_READDIRPLUS);
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	want_if_capable(conn, FUSE_CAP_ATOMIC_O_TRUNC);
	want_if_capable(conn, FUSE_CAP_PARALLEL_DIROPS);
	want_if_capable(conn, FUSE_CAP_ASYNC_DIO);
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	/* auto_inval_data drops a file's pages whenever attributes with a
	 * new mtime reach the kernel, some time after it checked that no
	 * write was in flight: a page-cache write starting in between copies
	 * its bytes into an uptodate page, unlocks it and sends its WRITE;
	 * the drop takes that page, a READ brings the older bytes back
	 * (zero-filled past the old size) before the WRITE reaches us, and
	 * the write's end then raises the size over them ("CACHED INLINE
	 * READS": a reader saw zeros; test_held_readers_while_growing).
	 * Page-cache handles have the sweeper for other mounts' changes
	 * instead; a size change still drops pages in the kernel.
	 * keep_cache_ro keeps its pages across opens and has no sweeper: it
	 * keeps auto_inval_data. */
	if (fs->o.keep_cache_ro)
		want_if_capable(conn, FUSE_CAP_AUTO_INVAL_DATA);
	else
		conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	/* Locks are meta's, shared by every mount ("Locks"). */
	want_if_capable(conn, FUSE_CAP_POSIX_LOCKS);
	want_if_capable(conn, FUSE_CAP_FLOCK_LOCKS);
	conn->max_write = FUSEFS_MAX_IO;
	conn->max_read = FUSEFS_MAX_IO; /* must match the max_read mount option */
	conn->max_readahead = FUSEFS_MAX_IO;
	conn->max_background = 64;
}

/* ---- Lookup-ahead (lookahead.h) ----
 *
 * Before asking meta for one name, op_lookup tries the directory's batch;
 * on a miss that continues an ascending run it fetches a batch from this
 * name on (LOOKUP_PLUS) and answers from it. The batch carries the
 * dircache generation taken before its read, checked with dc_note when it
 * answers (a foreign change of the directory ends it), and the kernel gets
 * only the rest of attr_timeout counted from the read. */

static void la_changed(struct fusefs *fs)
{
	if (fs->la)
		lookahead_changed(fs->la);
}

/* ---- Open-ahead ----
 *
 * A small file read whole after its lookup (cat, cp, a build reading
 * sources, a loader reading samples) costs an OPEN round trip per file
 * even when the lookup came from a lookup-ahead batch. When read-only
 * opens of inline files have gone to meta within the last second
 * (oa_want_ns), the next batch is fetched with LOOKUP_PLUSD instead, which
 * brings the bytes of every inline file the caller may read (up to meta's
 * 256 KiB reply) in the same snapshot as the inodes. A read-only open of
 * such a file is then answered here, without meta, when all of these hold
 * (op_open, oa_open):
 *   - the batch may still answer lookups (lookahead.h COHERENCE: within
 *     attr_timeout, no change by this mount since, the directory's
 *     dircache generation from before the read still holds) and was read
 *     less than read_ahead_ttl_ms (500 ms) ago: the bound inline bytes
 *     already have (docs/inline-data.md "read"), so a file another mount
 *     rewrote is read with its old bytes at most that long after the
 *     rewrite, and one it removed fails within one dircache poll;
 *   - the open is read-only without O_TRUNC and the file is not open on
 *     this mount (its own state is then newer);
 *   - the kernel enforces permissions and ACLs itself (default_permissions
 *     with POSIX ACLs), or the opener is the user whose read permission
 *     meta checked when it chose the bytes.
 * The file's size and the read's bytes are those of the batch; reads go on
 * from them until read_ahead_ttl_ms after the batch's read, as after an
 * OPEN. Memory: lookahead.h LOOKAHEAD_DATA_MAX. */

/* A batch read at READ_NS answered NAME in PARENT with IN (the reply
 * goes out next): remember where for the open, and that the kernel's
 * attributes of IN are that batch's. */
static void oa_note(struct fusefs *fs, uint64_t parent, const char *name,
                    const struct meta_inode *in, uint64_t read_ns)
{
	if (!fs->oa || in->type != META_T_FILE || !in->idata || in->size > META_IDATA_MAX)
		return;
	size_t nl = strlen(name);
	if (nl > META_NAME_MAX)
		return;
	pthread_mutex_lock(&fs->oa_lock);
	struct oa_slot *o = &fs->oa[(in->ino * 0x9E3779B97F4A7C15ull) >> 54];
	o->ino = in->ino;
	o->parent = parent;
	memcpy(o->name, name, nl + 1);
	o->told = 1;
	o->told_ns = read_ns;
	pthread_mutex_unlock(&fs->oa_lock);
}

/* Another attribute reply for INO may reach the kernel. */
static void oa_untold(struct fusefs *fs, uint64_t ino)
{
	if (!fs->oa)
		return;
	pthread_mutex_lock(&fs->oa_lock);
	struct oa_slot *o = &fs->oa[(ino * 0x9E3779B97F4A7C15ull) >> 54];
	if (o->ino == ino)
		o->told = 0;
	pthread_mutex_unlock(&fs->oa_lock);
}

/* 1 when the kernel's attributes of INO are still those the batch read
 * at READ_NS gave. */
static int oa_told(struct fusefs *fs, uint64_t ino, uint64_t read_ns)
{
	if (!fs->oa)
		return 0;
	pthread_mutex_lock(&fs->oa_lock);
	struct oa_slot *o = &fs->oa[(ino * 0x9E3779B97F4A7C15ull) >> 54];
	int told = o->ino == ino && o->told && o->told_ns == read_ns;
	pthread_mutex_unlock(&fs->oa_lock);
	return told;
}

/* 1 when the next lookup-ahead batch should carry inline bytes. */
static int oa_wanted(struct fusefs *fs)
{
	if (!fs->oa || atomic_load(&fs->oa_off))
		return 0;
	uint64_t w = atomic_load(&fs->oa_want_ns);
	return w && clock_mono_ns() - w < 1000000000ull && lookahead_data_room(fs->la);
}

/* Answers the read-only open of INO from a batch (see above): 1 and
 * *IN, the bytes in BUF (META_IDATA_MAX) and *LEN, *READ_NS; else 0. */
static int la_fetch(struct fusefs *fs, uint64_t parent, const char *name,
                    const struct meta_cred *cr, int data, int count, int next,
                    struct meta_inode *in, uint64_t *gen, uint64_t *read_ns);

static int oa_open(struct fusefs *fs, uint64_t ino, const struct meta_cred *cr,
                   struct meta_inode *in, uint8_t *buf, uint32_t *len, uint64_t *read_ns)
{
	struct oa_slot o;
	if (!fs->oa || !fs->la || !fs->dc)
		return 0;
	pthread_mutex_lock(&fs->oa_lock);
	o = fs->oa[(ino * 0x9E3779B97F4A7C15ull) >> 54];
	pthread_mutex_unlock(&fs->oa_lock);
	if (o.ino != ino)
		return 0;
	file_io_inode *fi = file_io_find(fs->o.fio, ino);
	if (fi) {
		file_io_release(fs->o.fio, fi);
		return 0;
	}
	uint64_t gen, g2, r2;
	uint32_t uid, gid;
	uint64_t ttl_ns = (uint64_t)file_io_snapshot_ms(fs->o.fio) * 1000000ull;
	if (!lookahead_get_idata(fs->la, o.parent, o.name, ino, ttl_ns, in, buf, len, &gen,
	                         read_ns, &uid, &gid)) {
		/* The batch that answered the lookup has no bytes, or too old
		 * ones: one fetch with bytes from this name on costs what the
		 * OPEN would, and serves the next opens in the directory. */
		if (atomic_load(&fs->oa_off) ||
		    la_fetch(fs, o.parent, o.name, cr, 1, LOOKAHEAD_BATCH, 0, in, &g2, &r2) != 1 ||
		    in->ino != ino ||
		    !lookahead_get_idata(fs->la, o.parent, o.name, ino, ttl_ns, in, buf, len, &gen,
		                         read_ns, &uid, &gid))
			return 0;
	}
	atomic_store(&fs->oa_want_ns, clock_mono_ns());
	if (!fs->acl && (cr->uid != uid || cr->gid != gid))
		return 0;
	if (in->size != *len || !dc_note(fs, o.parent, o.name, gen))
		return 0;
	return 1;
}

/* ---- Walk-ahead (lookahead.h WALK-AHEAD) ----
 *
 * Off unless CFS_LOOKAHEAD_WALK_AHEAD=1. WA_THREADS threads fetch the
 * batches of the directories a walk will reach next, so the walk's first
 * lookup in each finds its batch there (or waits for the fetch already on
 * its way, at most WA_WAIT_NS) instead of making its own round trip: with
 * two fetches in flight meta reads one directory while the mount decodes
 * the other. The fetches are la_fetch's, with the credentials of the
 * lookup that set them off, and with inline bytes while open-ahead wants
 * them (oa_wanted); one that fails leaves no batch (the walk's own lookup
 * then fetches as without walk-ahead). */
#define WA_THREADS 2
#define WA_QUEUE 256 /* refills: one per directory being walked (the peer job: 100) */
#define WA_WAIT_NS 200000000ull

struct wa_job {
	uint64_t dir;
	uint32_t uid, gid;
	/* a refill ("Refill-ahead"): DIR's entries from START on, with the
	 * bytes of inline files when DATA, kept as DIR's next batch */
	int refill, data;
	char start[META_NAME_MAX + 1];
};

struct wa_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	size_t head, n;
	struct wa_job q[WA_QUEUE];
	pthread_t th[WA_THREADS];
	int nth;
	int walk;   /* walk-ahead on (CFS_LOOKAHEAD_WALK_AHEAD=1) */
	int refill; /* refill-ahead on (unless CFS_LOOKAHEAD_REFILL=0) */
	int refill_data; /* of batches with inline bytes too (=data) */
	struct fusefs *fs;
};

static void *wa_main(void *arg)
{
	struct wa_pool *p = arg;
	struct meta_inode *in = malloc(sizeof(*in));
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->n == 0)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop)
			break;
		struct wa_job j = p->q[p->head];
		p->head = (p->head + 1) % WA_QUEUE;
		p->n--;
		pthread_mutex_unlock(&p->mu);
		struct meta_cred cr = {j.uid, j.gid, 0, NULL};
		uint64_t gen, read_ns;
		if (j.refill) {
			/* A fetch that got a batch put it, which ended the
			 * claim (and a claim made since is not this one's).
			 * The bytes over budget: none (the walk's own fetch
			 * with them, or its opens, as without refill). */
			if (!in || (j.data && !lookahead_data_room(p->fs->la)) ||
			    la_fetch(p->fs, j.dir, j.start, &cr, j.data && oa_wanted(p->fs),
			             LOOKAHEAD_BATCH_MAX, 1, in, &gen, &read_ns) < 0)
				lookahead_ahead_done(p->fs->la, j.dir);
		} else {
			if (in)
				/* with the bytes when the walk's own fetch would
				 * have them (open-ahead): else its opens fetched
				 * again */
				la_fetch(p->fs, j.dir, "", &cr, oa_wanted(p->fs), LOOKAHEAD_BATCH_MAX,
				         0, in, &gen, &read_ns);
			lookahead_ahead_done(p->fs->la, j.dir);
		}
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	free(in);
	return NULL;
}

static void wa_start(struct fusefs *fs)
{
	const char *e = getenv("CFS_LOOKAHEAD_WALK_AHEAD");
	const char *r = getenv("CFS_LOOKAHEAD_REFILL");
	int walk = e && !strcmp(e, "1");
	int refill = !r || strcmp(r, "0");
	int refill_data = r && !strcmp(r, "data");
	if (!fs->la || (!walk && !refill))
		return;
	struct wa_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->fs = fs;
	p->walk = walk;
	p->refill = refill;
	p->refill_data = refill_data;
	for (int i = 0; i < WA_THREADS; i++)
		if (pthread_create(&p->th[p->nth], NULL, wa_main, p) == 0)
			p->nth++;
	if (!p->nth) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		free(p);
		return;
	}
	LOG_NOTICE("fuse", "walk-ahead %s, refill-ahead %s: %d fetchers", walk ? "on" : "off",
	           refill_data ? "on with inline bytes" : refill ? "on" : "off", p->nth);
	fs->wa = p;
}

/* Waits for the fetchers (each ends its fetch first: at most meta's
 * retry bound) before the lookahead table goes. */
static void wa_stop(struct fusefs *fs)
{
	struct wa_pool *p = fs->wa;
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nth; i++)
		pthread_join(p->th[i], NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
	fs->wa = NULL;
}

/* Directory NAME in PARENT was just answered from PARENT's batch: queue
 * the fetches of the directories after it when PARENT is being walked. */
static void wa_note(struct fusefs *fs, fuse_req_t req, uint64_t parent, const char *name)
{
	struct wa_pool *p = fs->wa;
	uint64_t dirs[LOOKAHEAD_AHEAD];
	if (!p || !p->walk)
		return;
	int k = lookahead_walk_ahead(fs->la, parent, name, dirs, LOOKAHEAD_AHEAD);
	if (!k)
		return;
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	pthread_mutex_lock(&p->mu);
	int i = 0;
	for (; i < k && p->n < WA_QUEUE; i++) {
		p->q[(p->head + p->n) % WA_QUEUE] =
		    (struct wa_job){.dir = dirs[i], .uid = ctx->uid, .gid = ctx->gid};
		p->n++;
	}
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (; i < k; i++)
		lookahead_ahead_done(fs->la, dirs[i]); /* the queue is full */
}

/* ---- Refill-ahead (lookahead.h REFILL-AHEAD) ----
 *
 * On unless CFS_LOOKAHEAD_REFILL=0. A lookup just answered from PARENT's
 * batch past its middle hands the fetch of the entries after the batch to
 * the fetchers above, with the credentials of that lookup (as walk-ahead),
 * so the walk finds them there when it runs past the batch's end instead
 * of waiting for the round trip. Batches with inline bytes (open-ahead's)
 * only with CFS_LOOKAHEAD_REFILL=data: on a loaded 2-core machine the
 * 16 KiB read over 100 directories ran with it at a median 0.73x of the
 * same binary without it in 13 side-by-side rounds (README
 * "Refill-ahead"); a refill of such a batch brings bytes too (while
 * open-ahead wants them). The fetch is la_fetch's: same epoch, dircache
 * generation and TTL rules, so the coherence bound is that of any batch. */
static void ra_note(struct fusefs *fs, fuse_req_t req, uint64_t parent)
{
	struct wa_pool *p = fs->wa;
	struct wa_job j;
	uint64_t data_ttl_ns = p && p->refill_data && fs->o.fio
	                           ? (uint64_t)file_io_snapshot_ms(fs->o.fio) * 1000000ull
	                           : 0;
	if (!p || !p->refill || !lookahead_refill(fs->la, parent, data_ttl_ns, j.start, &j.data))
		return;
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	j.dir = parent;
	j.uid = ctx->uid;
	j.gid = ctx->gid;
	j.refill = 1;
	pthread_mutex_lock(&p->mu);
	int queued = p->n < WA_QUEUE;
	if (queued) {
		p->q[(p->head + p->n) % WA_QUEUE] = j;
		p->n++;
		pthread_cond_signal(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	if (!queued)
		lookahead_ahead_done(fs->la, parent);
}

/* Replies with IN (read from meta at READ_NS) for NAME in PARENT when the
 * dircache still vouches for generation GEN: 1; 0 when it does not (the
 * batch is dropped; the caller asks meta). */
static int la_reply(struct fusefs *fs, fuse_req_t req, uint64_t parent, const char *name,
                    const struct meta_inode *in, uint64_t gen, uint64_t read_ns)
{
	if (in->type == META_T_FILE && fs->o.fio) {
		/* open here: meta's attributes lag this mount's writes */
		file_io_inode *fi = file_io_find(fs->o.fio, in->ino);
		if (fi) {
			file_io_release(fs->o.fio, fi);
			return 0;
		}
	}
	double left = fs->o.attr_timeout - (double)(clock_mono_ns() - read_ns) / 1e9;
	if (left <= 0 || !dc_note(fs, parent, name, gen)) {
		lookahead_drop(fs->la, parent);
		return 0;
	}
	if (in->type == META_T_DIR)
		lookahead_dir_seen(fs->la, parent, name, in->ino);
	struct fuse_entry_param e;
	fill_entry(fs, in, &e);
	oa_note(fs, parent, name, in, read_ns); /* after fill_entry: oa_untold */
	e.attr_timeout = left;
	if (in->type == META_T_DIR)
		wa_note(fs, req, parent, name); /* before the reply: REQ goes with it */
	ra_note(fs, req, parent);
	fuse_reply_entry(req, &e);
	return 1;
}

/* Fetches COUNT of PARENT's entries from NAME on (included) into a batch
 * kept in the lookahead table (as PARENT's next batch when NEXT: a
 * refill), with the bytes of inline files when DATA (open-ahead): 1 and
 * *IN, *GEN, *READ_NS when NAME is among them; 0 when this snapshot has
 * no NAME; <0 when the fetch failed (the caller asks meta as without a
 * batch). May block. */
static int la_fetch(struct fusefs *fs, uint64_t parent, const char *name,
                    const struct meta_cred *cr, int data, int count, int next,
                    struct meta_inode *in, uint64_t *gen, uint64_t *read_ns)
{
	struct lookahead_batch *b = lookahead_batch_new();
	if (!b)
		return -ENOMEM;
	uint64_t epoch = lookahead_epoch(fs->la);
	*gen = dc_begin(fs, parent);
	*read_ns = clock_mono_ns();
	int eof = 0;
	meta_will_block(fs);
	int rc;
	if (data && !atomic_load(&fs->oa_off)) {
		lookahead_batch_set_cred(b, cr->uid, cr->gid);
		rc = meta_client_lookup_plus_idata(fs->o.meta, cr, parent, meta_name_c(name), count,
		                                   lookahead_batch_add_idata, b, &eof);
		if (rc == -CFS_EBADMSG_TYPE) {
			LOG_NOTICE("fuse", "meta does not know LOOKUP_PLUSD: open-ahead off");
			atomic_store(&fs->oa_off, 1);
			lookahead_batch_add(b, NULL, NULL);
			rc = meta_client_lookup_plus(fs->o.meta, cr, parent, meta_name_c(name),
			                             count, lookahead_batch_add, b, &eof);
		}
	} else {
		rc = meta_client_lookup_plus(fs->o.meta, cr, parent, meta_name_c(name), count,
		                             lookahead_batch_add, b, &eof);
	}
	if (rc == -CFS_EBADMSG_TYPE) {
		LOG_NOTICE("fuse", "meta does not know LOOKUP_PLUS: lookup-ahead off");
		lookahead_disable(fs->la);
	}
	if (rc < 0) {
		lookahead_batch_free(b);
		return rc;
	}
	int found = lookahead_batch_find(b, name, in);
	if (next)
		lookahead_put_next(fs->la, parent, b, *gen, epoch, *read_ns, eof);
	else
		lookahead_put(fs->la, parent, b, *gen, epoch, *read_ns, eof);
	return found;
}

/* 1 when a live batch held NAME and answered the lookup (IN: scratch).
 * A batch that may no longer answer (its directory changed) is dropped,
 * and the lookup goes on as a miss: a new batch from there (la_lookup).
 * Needs no credentials, dircache_begin or complete-directory check: the
 * batch carries its own generation and bound (lookahead.h COHERENCE), and
 * the kernel checks the caller's permissions (default_permissions). */
static int la_hit(struct fusefs *fs, fuse_req_t req, uint64_t parent, const char *name,
                  struct meta_inode *in)
{
	uint64_t gen, read_ns;
	return fs->la && fs->dc && lookahead_get(fs->la, parent, name, in, &gen, &read_ns) &&
	       la_reply(fs, req, parent, name, in, gen, read_ns);
}

/* After la_hit missed: 1 when the lookup was answered from a batch (IN:
 * scratch); -ENOENT when a batch fetched from NAME on (one snapshot, read
 * after the caller's dc_begin) does not hold it; 0: ask meta. */
static int la_lookup(struct fusefs *fs, fuse_req_t req, uint64_t parent, const char *name,
                     const struct meta_cred *cr, struct meta_inode *in)
{
	uint64_t gen, read_ns;
	if (!fs->la || !fs->dc)
		return 0;
	/* a walk-ahead fetch of PARENT on its way: wait for it */
	if (fs->wa && lookahead_wait(fs->la, parent, WA_WAIT_NS) &&
	    lookahead_get(fs->la, parent, name, in, &gen, &read_ns) &&
	    la_reply(fs, req, parent, name, in, gen, read_ns))
		return 1;
	int count = lookahead_want(fs->la, parent, name);
	if (!count)
		return 0;
	int rc = la_fetch(fs, parent, name, cr, oa_wanted(fs), count, 0, in, &gen, &read_ns);
	if (rc < 0)
		/* No answer within the retry bound: the plain lookup would
		 * wait the whole bound again (a stat took twice --meta-wait-ms
		 * while meta was down); report it. Any other error: op_lookup
		 * asks meta and reports its error. */
		return no_answer(rc) ? rc : 0;
	if (rc == 0)
		return -ENOENT;
	return la_reply(fs, req, parent, name, in, gen, read_ns);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (usrbio_fuse_lookup(fs_of(req)->o.usrbio, req, parent, name))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	struct meta_inode inb, *in = &inb; /* on the stack: see INODE RECORDS */
	/* A hit first, before any work only a miss needs: a stat of every
	 * file over many directories touched each one's dircache entry and
	 * name sets (cold memory) per lookup, and a caller other than root
	 * had its groups read from /proc. */
	if (la_hit(fs, req, parent, name, in)) {
		return;
	}
	/* A directory this mount made and nobody else changed: its names
	 * are known here (the lookup before every create of a new name),
	 * and the negative entry is noted in the same hold.
	 * Credentials only when meta is asked: a non-root caller's cost
	 * its groups ("Caller groups"). */
	double neg = negative_ttl(fs);
	uint64_t gen = 0;
	int known = 0, known_cache = 0;
	if (fs->dc && strlen(name) <= META_NAME_MAX)
		known = dircache_begin_absent(fs->dc, parent, name, neg > 0, &gen, &known_cache);
	else
		gen = dc_begin(fs, parent);
	if (!known)
		req_cred(req, &cb);
	int rc = known ? -ENOENT : la_lookup(fs, req, parent, name, &cb.c, in);
	if (rc == 1) {
		return;
	}
	if (rc == 0) {
		meta_will_block(fs);
		rc = meta_client_lookup(fs->o.meta, &cb.c, parent, meta_name_c(name), in);
	}
	/* A name meta does not have, in a directory whose names are not all
	 * known here: the next lookups of absent names there (creates') are
	 * answered here once the whole list is (dircache_list: small
	 * directories this mount creates in, at most once a second each). */
	if (rc == -ENOENT && fs->dc && !known) {
		fuseloop_will_block();
		dircache_list(fs->dc, parent, &cb.c);
	}
	if (!known)
		neg = negative_ttl(fs); /* after the meta call, as it answers */
	if (rc == -ENOENT && neg > 0 &&
	    (known ? known_cache : dc_note(fs, parent, name, gen))) {
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		e.entry_timeout = neg;
		fuse_reply_entry(req, &e);
	} else if (rc < 0) {
		reply_err(req, rc);
	} else {
		reply_entry_c(req, in, dc_note(fs, parent, name, gen));
	}
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	fuse_reply_none(req);
}

/* ---- Getattr-ahead ----
 *
 * attr_timeout after its lookup a directory's attributes expire in the
 * kernel, and the next path walk through it sends GETATTR (the permission
 * check): a walk over many directories (stat of d1/f, d2/f, ... for longer
 * than attr_timeout) costs one meta round trip per directory per
 * attr_timeout. A directory whose lookup a batch answered has its entry in
 * its parent's batches (lookahead_dir_seen), so its GETATTR is answered
 * from the parent's live batch when that holds the same inode: what meta
 * read then, with the rest of attr_timeout counted from the read (the
 * bound the kernel's own cache gives), and only while the batch may answer
 * lookups (lookahead.h COHERENCE: no change by this mount since, the
 * parent's dircache generation still holds). When the batch has expired,
 * GETATTRs of such directories in ascending name order fetch a new batch
 * from the name on, as a run of lookups does (lookahead_want): the kernel
 * asks in the order it looked the directories up. Files are not answered
 * here (their sizes and times move with writes this table does not see). */
static int la_getattr(struct fusefs *fs, fuse_req_t req, uint64_t ino, const struct meta_cred *cr,
                      struct meta_inode *in)
{
	uint64_t parent, gen, read_ns;
	char name[META_NAME_MAX + 1];
	if (!fs->la || !fs->dc || !lookahead_dir_where(fs->la, ino, &parent, name))
		return 0;
	if (!lookahead_get(fs->la, parent, name, in, &gen, &read_ns)) {
		int count = lookahead_want(fs->la, parent, name);
		if (!count || la_fetch(fs, parent, name, cr, 0, count, 0, in, &gen, &read_ns) != 1)
			return 0;
	}
	if (in->ino != ino || in->type != META_T_DIR)
		return 0;
	double left = fs->o.attr_timeout - (double)(clock_mono_ns() - read_ns) / 1e9;
	if (left <= 0 || !dc_note(fs, parent, name, gen)) {
		lookahead_drop(fs->la, parent);
		return 0;
	}
	struct stat st;
	fill_stat(fs, in, &st);
	fuse_reply_attr(req, &st, left);
	return 1;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *ffi)
{
	if (usrbio_fuse_getattr(fs_of(req)->o.usrbio, req, ino))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	struct meta_inode inb, *in = &inb; /* on the stack: see INODE RECORDS */
	struct stat dst;
	double dttl;
	if (dattr_get(fs, ino, &dst, &dttl)) {
		oa_untold(fs, ino);
		fuse_reply_attr(req, &dst, dttl);
		return;
	}
	req_cred(req, &cb); /* after the answers that need none */
	if (la_getattr(fs, req, ino, &cb.c, in))
		return;
	meta_will_block(fs);
	int rc = meta_client_getattr(fs->o.meta, &cb.c, ino, in);
	if (rc < 0) {
		reply_ino_err(req, rc);
	} else {
		struct stat st;
		fill_stat(fs, in, &st);
		fuse_reply_attr(req, &st, fs->o.attr_timeout);
	}
}

/* Sends LEN, the unreported length FI gave, as INO's (no session
 * needed) and records it as acknowledged. 0 or <0. */
static int report_taken(struct fusefs *fs, file_io_inode *fi, uint64_t ino,
                        const struct meta_length *len)
{
	struct meta_cred cr = {0, 0, 0, NULL};
	uint64_t size = 0;
	int rc = meta_client_sync(fs->o.meta, &cr, ino, len, 0, &size);
	if (rc == 0)
		file_io_length_reported(fi, len);
	return rc;
}

/* Waits for the inode's write-behind writes, then hands this client's
 * written length to meta (query 0: our hint is exact for what we wrote;
 * storage acks are durable). 0 when nothing to say; a write-behind
 * failure comes back here (close, fsync) as the write's error. */
static int report_length_how(struct fusefs *fs, uint64_t ino, int durable)
{
	struct meta_cred cr = {0, 0, 0, NULL};
	file_io_inode *fi = fs->o.fio ? file_io_find(fs->o.fio, ino) : NULL;
	if (!fi)
		return durable ? meta_client_fsync(fs->o.meta, &cr, ino, NULL, NULL) : 0;
	int werr = file_io_drain(fi);
	struct meta_length len;
	int rc = 0;
	int wrote = durable ? file_io_length(fi, &len) : file_io_length_unreported(fi, &len);
	uint64_t size = 0;
	if (durable)
		rc = meta_client_fsync(fs->o.meta, &cr, ino, wrote ? &len : NULL, &size);
	else if (wrote)
		rc = meta_client_sync(fs->o.meta, &cr, ino, &len, 0, &size);
	if (wrote && rc == 0)
		file_io_length_reported(fi, &len);
	file_io_release(fs->o.fio, fi);
	return werr ? werr : rc;
}

static int report_length(struct fusefs *fs, uint64_t ino)
{
	return report_length_how(fs, ino, 0);
}

/* Moves INO's inline data to chunks (file_io.h "inline data"), through
 * the open state if there is one. 0 or <0. */
static int idata_convert(struct fusefs *fs, uint64_t ino)
{
	file_io_inode *fi = file_io_find(fs->o.fio, ino);
	int rc = 0;
	if (!fi) {
		struct meta_cred cr = {0, 0, 0, NULL};
		struct meta_inode *in = malloc(sizeof(*in));
		rc = in ? meta_client_getattr(fs->o.meta, &cr, ino, in) : -ENOMEM;
		if (rc == 0)
			rc = in->idata ? file_io_open(fs->o.fio, in, &fi) : 0;
		free(in);
	}
	if (rc == 0 && fi)
		rc = file_io_idata_convert(fs->o.fio, fi);
	file_io_release(fs->o.fio, fi);
	dattr_forget(fs, ino);
	return rc;
}

/* meta_client_setattr; a size past the inline threshold of an inline
 * file (-CFS_ENOTINLINE) converts it to chunks first, then sets it. */
static int setattr_call(struct fusefs *fs, const struct meta_cred *c, uint64_t ino,
                        const struct meta_setattr *sa, struct meta_inode *in)
{
	int rc = meta_client_setattr(fs->o.meta, c, ino, sa, in);
	for (int i = 0; i < 3 && rc == -CFS_ENOTINLINE && fs->o.fio; i++) {
		rc = idata_convert(fs, ino);
		if (rc == 0)
			rc = meta_client_setattr(fs->o.meta, c, ino, sa, in);
	}
	return rc;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *ffi)
{
	if (usrbio_fuse_setattr(fs_of(req)->o.usrbio, req, ino))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	struct meta_setattr sa;
	memset(&sa, 0, sizeof(sa));
	if (to_set & FUSE_SET_ATTR_MODE) {
		sa.valid |= META_SET_MODE;
		sa.mode = attr->st_mode & 07777;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		sa.valid |= META_SET_UID;
		sa.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		sa.valid |= META_SET_GID;
		sa.gid = attr->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (attr->st_size < 0) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		sa.valid |= META_SET_SIZE;
		sa.size = (uint64_t)attr->st_size;
	}
	if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
		sa.valid |= META_SET_ATIME_NOW;
	} else if (to_set & FUSE_SET_ATTR_ATIME) {
		sa.valid |= META_SET_ATIME;
		sa.atime = (int64_t)attr->st_atim.tv_sec * 1000000000 + attr->st_atim.tv_nsec;
	}
	if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
		sa.valid |= META_SET_MTIME_NOW;
	} else if (to_set & FUSE_SET_ATTR_MTIME) {
		sa.valid |= META_SET_MTIME;
		sa.mtime = (int64_t)attr->st_mtim.tv_sec * 1000000000 + attr->st_mtim.tv_nsec;
	}
	if (to_set & FUSE_SET_ATTR_CTIME) {
		sa.valid |= META_SET_CTIME;
		sa.ctime = (int64_t)attr->st_ctim.tv_sec * 1000000000 + attr->st_ctim.tv_nsec;
	}
	/* The kernel drops set-id bits of a truncated or chowned file by
	 * sending the reduced mode with the size or owner (or, with
	 * HANDLE_KILLPRIV_V2, a kill flag): meta applies the kill itself, so
	 * a caller who may truncate but not chmod is not refused. */
	if (((to_set & FUSE_SET_ATTR_MODE) &&
	     (to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) ||
	    (to_set & FUSE_SET_ATTR_KILL_SUID)) {
		sa.valid &= ~(unsigned)META_SET_MODE;
		sa.valid |= META_SET_KILL_SUIDGID;
	}
	/* ftruncate: permission was checked when the fd was opened for write. */
	if (ffi && ffi->fh) {
		struct fusefs_file *hf = (struct fusefs_file *)(uintptr_t)ffi->fh;
		if ((hf->flags & O_ACCMODE) != O_RDONLY)
			sa.valid |= META_SET_FD_WRITE;
	}
	struct meta_inode *in = inode_new(req);
	if (!in)
		return;
	req_cred(req, &cb);
	int rc = 0;
	/* Meta must know how far we wrote before it decides whether a new
	 * size shrinks the file (and removes chunks) or extends it. */
	if (sa.valid & META_SET_SIZE)
		rc = report_length(fs, ino);
	if (rc == 0) {
		rc = setattr_call(fs, &cb.c, ino, &sa, in);
		dattr_drop_all(fs);
	}
	if (rc < 0) {
		reply_err(req, rc);
	} else {
		if (fs->o.fio && in->type == META_T_FILE) {
			file_io_inode *fi = file_io_find(fs->o.fio, ino);
			if (fi) {
				file_io_update(fi, in);
				file_io_release(fs->o.fio, fi);
			}
		}
		struct stat st;
		fill_stat(fs, in, &st);
		fuse_reply_attr(req, &st, fs->o.attr_timeout);
	}
	free(in);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	if (usrbio_fuse_readlink(fs_of(req)->o.usrbio, req, ino))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	char buf[META_SYMLINK_MAX + 1];
	req_cred(req, &cb);
	int rc = meta_client_readlink(fs->o.meta, &cb.c, ino, buf, sizeof(buf));
	if (rc < 0) {
		reply_err(req, rc);
		return;
	}
	buf[rc < (int)sizeof(buf) ? rc : (int)sizeof(buf) - 1] = 0;
	fuse_reply_readlink(req, buf);
}

/* ---- ACLs ----
 *
 * With FUSE_CAP_POSIX_ACL the kernel checks permissions against the
 * system.posix_acl_access xattr (which meta keeps with the mode in step,
 * meta_acl.c) and, with FUSE_CAP_DONT_MASK, hands creates the mode before
 * the umask together with the umask. So a create here does what the
 * kernel's posix_acl_create does for a local disk: if the parent has a
 * default ACL, the new node's mode is masked by it (the umask is ignored),
 * and the node gets it as its access ACL (unless the mode says it all) and,
 * for a directory, as its default ACL; otherwise the umask applies. The
 * parent's default ACL is read once per attr_timeout when it has none
 * (acl_none_cached). The ACLs are set right
 * after the node is created, in separate meta calls: a mount that dies in
 * between leaves the node with the masked mode but without the named
 * entries (docs/posix.md, "ACLs"). */

struct acl_inherit {
	uint8_t *acc, *def; /* access ACL and default ACL to set; NULL: none */
	size_t acc_len, def_len;
};

/* Reads NAME of INO into a new buffer: length, 0 when absent, or <0. */
static int xattr_fetch(struct fusefs *fs, const struct meta_cred *c, uint64_t ino, const char *name,
                       uint8_t **out)
{
	size_t cap = 1024;
	*out = NULL;
	for (int tries = 0; tries < 3; tries++) {
		uint8_t *b = malloc(cap);
		if (!b)
			return -ENOMEM;
		int rc = meta_client_getxattr(fs->o.meta, c, ino, meta_name_c(name), b, cap);
		if (rc >= 0) {
			*out = b;
			return rc;
		}
		free(b);
		if (rc == -ENODATA)
			return 0;
		if (rc != -ERANGE)
			return rc;
		rc = meta_client_getxattr(fs->o.meta, c, ino, meta_name_c(name), NULL, 0);
		if (rc < 0)
			return rc == -ENODATA ? 0 : rc;
		cap = (size_t)rc + 1;
	}
	return -EAGAIN;
}

/* The "no default ACL" cache: a directory whose default ACL read came back
 * empty is not asked again, so a stream of creates in one directory costs
 * no extra meta call. It holds for attr_timeout (the time the kernel
 * trusts its attributes anyway), and beyond as long as the dircache finds
 * the directory unchanged by others since the read (dircache_unchanged:
 * meta counts a default ACL change as a change of the directory), so
 * creates over many directories do not ask once per directory per
 * attr_timeout. Setting or removing a default ACL through this mount
 * drops the entry; one set through another mount applies here once both
 * have let go: after attr_timeout and within the dircache's bound (a poll
 * interval and a round trip), i.e. within attr_timeout as before. A hit
 * does not extend the time (it used to, so a busy directory never read
 * its default ACL again). */
static struct acl_none_slot *acl_slot(struct fusefs *fs, uint64_t ino)
{
	return &fs->acl_none[(ino * 0x9E3779B97F4A7C15ull) >> 56];
}

static int acl_none_cached(struct fusefs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->acl_lock);
	struct acl_none_slot *sl = acl_slot(fs, ino);
	int hit = sl->ino == ino && sl->until_ns > clock_mono_ns();
	int gen_hit = !hit && sl->ino == ino && fs->dc;
	uint64_t gen = sl->gen;
	pthread_mutex_unlock(&fs->acl_lock);
	return hit || (gen_hit && dircache_unchanged(fs->dc, ino, gen));
}

/* NONE: INO has no default ACL as read after dircache generation GEN. */
static void acl_none_set(struct fusefs *fs, uint64_t ino, int none, uint64_t gen)
{
	uint64_t ttl = fs->o.attr_timeout > 0 ? (uint64_t)(fs->o.attr_timeout * 1e9) : 0;
	pthread_mutex_lock(&fs->acl_lock);
	struct acl_none_slot *sl = acl_slot(fs, ino);
	if (none && ttl) {
		sl->ino = ino;
		sl->until_ns = clock_mono_ns() + ttl;
		sl->gen = gen;
	} else if (sl->ino == ino) {
		sl->ino = 0;
	}
	pthread_mutex_unlock(&fs->acl_lock);
}

/* The "no access ACL" cache. With FUSE_CAP_POSIX_ACL the kernel reads
 * an inode's system.posix_acl_access before it checks a non-root caller's
 * access, and keeps the answer while it keeps the attributes - except for
 * the mount's root, which it asks again on every path walk: a non-root
 * stat of each of 20,000 files cost 20,000 GETXATTRs of the root, each a
 * meta round trip. An absent access ACL (the common case) is remembered
 * here for attr_timeout from the start of the read that found it absent,
 * no longer: meta does not count an access ACL change as a change of the
 * directory, so the dircache cannot extend it, and attr_timeout is the
 * bound the kernel itself gives an ACL (and chmod) set through another
 * mount (docs/posix.md "ACLs"). This mount's own access ACL sets drop the
 * entry once meta has answered the set, and bump acc_gen so that a read
 * which raced with the set does not store its stale "absent": a drop
 * before the set would let a read that starts after it, and reaches meta
 * before the set does, store "absent" for attr_timeout after the set
 * returned. Only absence is cached: a present ACL
 * is read from meta each time, as before. */
static struct acc_none_slot *acc_slot(struct fusefs *fs, uint64_t ino)
{
	return &fs->acc_none[(ino * 0x9E3779B97F4A7C15ull) >> 56];
}

/* 1 when INO is known to have no access ACL; else 0 and *GEN the
 * generation to hand acc_none_put after the read. */
static int acc_none_get(struct fusefs *fs, uint64_t ino, uint64_t *gen)
{
	pthread_mutex_lock(&fs->acl_lock);
	struct acc_none_slot *sl = acc_slot(fs, ino);
	int hit = sl->ino == ino && sl->until_ns > clock_mono_ns();
	*gen = fs->acc_gen;
	pthread_mutex_unlock(&fs->acl_lock);
	return hit;
}

/* INO had no access ACL in a read that started at START_NS (mono) after
 * generation GEN was taken. */
static void acc_none_put(struct fusefs *fs, uint64_t ino, uint64_t gen, uint64_t start_ns)
{
	uint64_t ttl = fs->o.attr_timeout > 0 ? (uint64_t)(fs->o.attr_timeout * 1e9) : 0;
	if (!ttl)
		return;
	pthread_mutex_lock(&fs->acl_lock);
	if (fs->acc_gen == gen) {
		struct acc_none_slot *sl = acc_slot(fs, ino);
		sl->ino = ino;
		sl->until_ns = start_ns + ttl;
	}
	pthread_mutex_unlock(&fs->acl_lock);
}

/* This mount has just set (or removed, or failed to: harmless) INO's
 * access ACL at meta; call it after meta's answer, before the reply. */
static void acc_none_drop(struct fusefs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->acl_lock);
	struct acc_none_slot *sl = acc_slot(fs, ino);
	if (sl->ino == ino)
		sl->ino = 0;
	fs->acc_gen++;
	pthread_mutex_unlock(&fs->acl_lock);
}

/* Turns the kernel's create MODE for a node (IS_DIR) in PARENT into the
 * mode to create with, and fills AI with the ACLs to give it. */
static int acl_prepare(fuse_req_t req, struct fusefs *fs, const struct meta_cred *c,
                       uint64_t parent, int is_dir, uint32_t *mode, struct acl_inherit *ai)
{
	memset(ai, 0, sizeof(*ai));
	if (!fs->acl)
		return 0; /* the kernel applied the umask */
	uint8_t *def = NULL;
	int cached = acl_none_cached(fs, parent);
	uint64_t gen = cached ? 0 : dc_begin(fs, parent);
	int n = cached ? 0 : xattr_fetch(fs, c, parent, META_ACL_DEFAULT, &def);
	if (n < 0)
		return n;
	if (n == 0 && !cached)
		acl_none_set(fs, parent, 1, gen);
	if (n == 0 || meta_acl_check(def, (size_t)n)) {
		free(def);
		*mode &= ~(uint32_t)fuse_req_ctx(req)->umask;
		return 0;
	}
	uint8_t *acc = malloc((size_t)n);
	if (!acc) {
		free(def);
		return -ENOMEM;
	}
	memcpy(acc, def, (size_t)n);
	if (meta_acl_create(acc, (size_t)n, mode)) {
		ai->acc = acc;
		ai->acc_len = (size_t)n;
	} else {
		free(acc);
	}
	if (is_dir) {
		ai->def = def;
		ai->def_len = (size_t)n;
	} else {
		free(def);
	}
	return 0;
}

/* Gives the new node INO the ACLs of AI (and frees them). */
static void acl_apply(struct fusefs *fs, const struct meta_cred *c, uint64_t ino,
                      struct acl_inherit *ai)
{
	int rc = 0;
	if (ai->acc) {
		rc = meta_client_setxattr(fs->o.meta, c, ino, meta_name_c(META_ACL_ACCESS), ai->acc,
		                          ai->acc_len, 0);
		acc_none_drop(fs, ino);
		dattr_drop_all(fs);
	}
	if (rc == 0 && ai->def) {
		rc = meta_client_setxattr(fs->o.meta, c, ino, meta_name_c(META_ACL_DEFAULT),
		                          ai->def, ai->def_len, 0);
		dattr_drop_all(fs);
	}
	if (rc < 0)
		LOG_WARN("fuse", "inheriting the default ACL failed: ino=%llu: %s",
		         (unsigned long long)ino, cfs_strerror(rc));
	free(ai->acc);
	free(ai->def);
	memset(ai, 0, sizeof(*ai));
}

/* Gives MADE, the node this request made (NULL: none), the ACLs of AI, and
 * frees them either way. */
static void acl_finish(struct fusefs *fs, const struct meta_cred *c, const struct meta_inode *made,
                       struct acl_inherit *ai)
{
	if (made)
		acl_apply(fs, c, made->ino, ai); /* leaves AI empty */
	free(ai->acc);
	free(ai->def);
	memset(ai, 0, sizeof(*ai));
}

/* What a request that makes a name in a directory (mknod, mkdir, create,
 * symlink, link) holds from its start to its entry reply. */
struct new_entry {
	struct fusefs *fs;
	struct cred_buf cb;    /* the caller's credentials */
	struct meta_inode *in; /* the reply's inode: &inb */
	uint64_t gen;          /* PARENT's dircache generation before the change */
	struct meta_inode inb; /* on the caller's stack ("INODE RECORDS") */
};

/* Starts such a request: the caller's credentials, the reply's inode and
 * PARENT's dircache generation (taken before meta changes it, dc_note);
 * new_entry_reply answers. */
static void new_entry_begin(fuse_req_t req, uint64_t parent, struct new_entry *ne)
{
	ne->fs = fs_of(req);
	ne->in = &ne->inb;
	req_cred(req, &ne->cb);
	ne->gen = dc_begin(ne->fs, parent);
}

/* Answers with RC's error or NE's inode as the entry NAME in PARENT (kept in
 * the kernel's cache only while dc_note says so). */
static void new_entry_reply(fuse_req_t req, struct new_entry *ne, int rc, uint64_t parent,
                            const char *name)
{
	if (rc < 0)
		reply_err(req, rc);
	else
		reply_entry_c(req, ne->in, dc_note(ne->fs, parent, name, ne->gen));
}

/* FIFOs, sockets and devices are nodes in meta; the kernel serves them
 * (pipes, bind, device drivers) once the attributes say what they are, and
 * checks CAP_MKNOD for devices before the request comes here. */
static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	if (usrbio_fuse_deny(fs_of(req)->o.usrbio, req, parent))
		return;
	struct new_entry ne;
	new_entry_begin(req, parent, &ne);
	struct fusefs *fs = ne.fs;
	uint32_t m = mode & 07777;
	struct acl_inherit ai;
	int rc = acl_prepare(req, fs, &ne.cb.c, parent, 0, &m, &ai);
	if (rc == 0) {
		own_begin(fs);
		if (S_ISREG(mode))
			rc = meta_client_create(fs->o.meta, &ne.cb.c, parent, meta_name_c(name), m,
			                        META_O_EXCL, ne.in, NULL);
		else {
			rc =
			    meta_client_mknod(fs->o.meta, &ne.cb.c, parent, meta_name_c(name),
			                      ((uint32_t)mode & S_IFMT) | m, (uint64_t)rdev, ne.in);
		}
		dattr_drop_all(fs);
		own_end(fs, parent, name, rc, 1);
	}
	acl_finish(fs, &ne.cb.c, rc == 0 ? ne.in : NULL, &ai);
	new_entry_reply(req, &ne, rc, parent, name);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	if (usrbio_fuse_deny(fs_of(req)->o.usrbio, req, parent))
		return;
	struct new_entry ne;
	new_entry_begin(req, parent, &ne);
	struct fusefs *fs = ne.fs;
	uint32_t m = mode & 07777;
	struct acl_inherit ai;
	int rc = acl_prepare(req, fs, &ne.cb.c, parent, 1, &m, &ai);
	if (rc == 0) {
		own_begin(fs);
		rc = meta_client_mkdir(fs->o.meta, &ne.cb.c, parent, meta_name_c(name), m, ne.in);
		dattr_drop_all(fs);
		if (rc == 0 && fs->dc)
			dircache_dir_made(fs->dc, ne.in->ino);
		own_end(fs, parent, name, rc, 1);
	}
	acl_finish(fs, &ne.cb.c, rc == 0 ? ne.in : NULL, &ai);
	new_entry_reply(req, &ne, rc, parent, name);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	/* UNLINK may be a fast opcode (fuse_loop.h): unregistering an iov
	 * may wait */
	if (usrbio_is_virtual(parent))
		fuseloop_will_block();
	if (usrbio_fuse_unlink(fs_of(req)->o.usrbio, req, parent, name))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	req_cred(req, &cb);
	struct meta_inode dir; /* the parent after the change ("INODE RECORDS") */
	struct dattr_ticket dt = dattr_begin(fs, parent);
	own_begin(fs);
	int rc = meta_client_unlink_dir(fs->o.meta, &cb.c, parent, meta_name_c(name), &dir);
	if (rc == 0)
		dattr_put(fs, parent, dt, &dir, 1);
	own_end(fs, parent, name, rc, -1);
	fuse_reply_err(req, to_errno(rc));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (usrbio_fuse_deny(fs_of(req)->o.usrbio, req, parent))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	req_cred(req, &cb);
	own_begin(fs);
	int rc = meta_client_rmdir(fs->o.meta, &cb.c, parent, meta_name_c(name));
	dattr_drop_all(fs);
	own_end(fs, parent, name, rc, 0);
	fuse_reply_err(req, to_errno(rc));
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	/* SYMLINK may be a fast opcode (fuse_loop.h): registering an iov
	 * may wait */
	if (usrbio_is_virtual(parent))
		fuseloop_will_block();
	if (usrbio_fuse_symlink(fs_of(req)->o.usrbio, req, link, parent, name))
		return;
	struct new_entry ne;
	new_entry_begin(req, parent, &ne);
	struct fusefs *fs = ne.fs;
	own_begin(fs);
	int rc = meta_client_symlink(fs->o.meta, &ne.cb.c, parent, meta_name_c(name),
	                             meta_name_c(link), ne.in);
	dattr_drop_all(fs);
	own_end(fs, parent, name, rc, 1);
	new_entry_reply(req, &ne, rc, parent, name);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	if (usrbio_fuse_deny(fs_of(req)->o.usrbio, req, parent) ||
	    usrbio_fuse_deny(fs_of(req)->o.usrbio, req, newparent))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	unsigned mf = 0;
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL); /* RENAME_WHITEOUT: no overlay support */
		return;
	}
	if (flags & RENAME_NOREPLACE)
		mf |= META_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		mf |= META_RENAME_EXCHANGE;
	req_cred(req, &cb);
	/* The kernel moves its cached entry to the new name with the timeout
	 * it had: track it there. A rename is not counted as our own change,
	 * so the next poll drops both directories' names (cheap, and exact
	 * whatever meta counted for an exchange or a replacement). */
	uint64_t gen = dc_begin(fs, newparent);
	if (fs->dc) {
		dircache_begin(fs->dc, parent);
		dircache_incomplete(fs->dc, parent);
		dircache_incomplete(fs->dc, newparent);
	}
	int rc = meta_client_rename(fs->o.meta, &cb.c, parent, meta_name_c(name), newparent,
	                            meta_name_c(newname), mf);
	dattr_drop_all(fs);
	if (rc == 0) {
		dc_note(fs, newparent, newname, gen);
		if (flags & RENAME_EXCHANGE)
			dc_note(fs, parent, name, gen);
	}
	fuse_reply_err(req, to_errno(rc));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	if (usrbio_fuse_deny(fs_of(req)->o.usrbio, req, newparent))
		return;
	struct new_entry ne;
	new_entry_begin(req, newparent, &ne);
	struct fusefs *fs = ne.fs;
	own_begin(fs);
	int rc =
	    meta_client_link(fs->o.meta, &ne.cb.c, ino, newparent, meta_name_c(newname), ne.in);
	dattr_drop_all(fs);
	own_end(fs, newparent, newname, rc, 1);
	new_entry_reply(req, &ne, rc, newparent, newname);
}

static unsigned open_flags(int flags)
{
	unsigned f = 0;
	int acc = flags & O_ACCMODE;
	if (acc != O_WRONLY)
		f |= META_O_READ;
	if (acc != O_RDONLY)
		f |= META_O_WRITE;
	/* Whatever the access mode: Linux truncates at O_RDONLY | O_TRUNC
	 * too, when the caller may write the file (meta checks). Its run
	 * needs the open's write session (meta_open), so even a read-only
	 * handle then holds one, which its release closes. */
	if (flags & O_TRUNC)
		f |= META_O_TRUNC;
	return f;
}

static int file_writable(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY;
}

/* 1 when a page-cache handle of INO is open here; fs->lock held. */
static int pc_of_locked(const struct fusefs *fs, uint64_t ino)
{
	if (fs->npc)
		for (const struct fusefs_file *g = fs->files; g; g = g->next)
			if (g->pc && g->ino == ino)
				return 1;
	return 0;
}

/* The kernel's open flag of an exec (__FMODE_EXEC, asm-generic/fcntl.h):
 * the OPEN of a file execve runs carries it, and that handle lives as long
 * as the program (its mm's exe_file). */
#define FUSEFS_FMODE_EXEC 040

/* 1 when a program runs INO here: a handle opened by an exec is open
 * (ETXTBSY for an O_TRUNC, op_open). */
static int exec_of(struct fusefs *fs, uint64_t ino)
{
	int found = 0;
	pthread_mutex_lock(&fs->lock);
	for (const struct fusefs_file *g = fs->files; g && !found; g = g->next)
		found = g->ino == ino && (g->flags & FUSEFS_FMODE_EXEC);
	pthread_mutex_unlock(&fs->lock);
	return found;
}

/* 1 when a writable handle of INO other than F is open here; fs->lock
 * held. */
static int writer_of_locked(const struct fusefs *fs, uint64_t ino, const struct fusefs_file *f)
{
	if (fs->nwr)
		for (const struct fusefs_file *g = fs->files; g; g = g->next)
			if (g != f && g->ino == ino && file_writable(g->flags))
				return 1;
	return 0;
}

/* Closes F's meta session (reporting the written length; when meta has
 * the length already, later with others through fs->closer), drops its
 * file_io reference, unlinks and frees it. CR: whose close it is. */
static void lock_drop_file(struct fusefs *fs, struct fusefs_file *f);

/* TAKEN: -1, or what file_io_drain_unreported returned for F's inode
 * when the caller drained it already (F with a session the closer may
 * end). */
static void file_drop_taken(struct fusefs *fs, struct fusefs_file *f, const struct meta_cred *cr,
                            int taken)
{
	lock_drop_file(fs, f);
	if (f->session)
		la_changed(fs); /* a writer's length and times reach meta now */
	/* Flush (close) reported any write error already. Meta has this
	 * session's length (nothing written, or flush reported it): the close
	 * only removes the session key, and nobody waits for it (closer.h).
	 * The drain and that check in one hold of the inode's lock. */
	if (f->session && fs->closer) {
		struct meta_length len;
		int werr;
		if (taken < 0 && f->fi)
			taken = file_io_drain_unreported(f->fi, 1, &len, &werr);
		if (taken <= 0 && closer_add(fs->closer, f->ino, f->session))
			f->session = 0;
	} else if (f->fi) {
		file_io_drain(f->fi);
	}
	if (f->session) {
		fuseloop_will_block(); /* RELEASE is a fast opcode (file_quiet) */
		struct meta_length len;
		int wrote = f->fi ? file_io_length(f->fi, &len) : 0;
		/* Our length report is exact for what this mount wrote: one
		 * meta txn ends the session, no storage query. */
		int rc = meta_client_close_known(fs->o.meta, cr, f->ino, f->session,
		                                 wrote ? &len : NULL);
		if (rc < 0) {
			/* Meta would keep the session while this mount lives (the
			 * file's length short, an unlinked file out of GC): the
			 * closer tries again in the background (closer.h). */
			LOG_WARN("fuse", "close failed (retried in the background): ino=%llu: %s",
			         (unsigned long long)f->ino, cfs_strerror(rc));
			if (!fs->closer || !closer_retry(fs->closer, f->ino, f->session,
			                                 wrote ? &len : NULL, rc)) {
				if (wrote)
					meta_client_sync(fs->o.meta, cr, f->ino, &len, 0, NULL);
			}
		}
	}
	pthread_mutex_lock(&fs->lock);
	if (f->prev)
		f->prev->next = f->next;
	else
		fs->files = f->next;
	if (f->next)
		f->next->prev = f->prev;
	if (f->pc)
		fs->npc--;
	if (file_writable(f->flags))
		fs->nwr--;
	pthread_mutex_unlock(&fs->lock);
	file_io_release(fs->o.fio, f->fi);
	free(f);
}

static void file_drop(struct fusefs *fs, struct fusefs_file *f, const struct meta_cred *cr)
{
	file_drop_taken(fs, f, cr, -1);
}

/* Builds the handle for an opened IN and sets the open flags the kernel
 * gets. 0 or -errno (then the caller closes the session). */
static int file_setup(struct fusefs *fs, const struct meta_inode *in, uint64_t session,
                      struct fuse_file_info *ffi)
{
	struct fusefs_file *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->ino = in->ino;
	f->session = session;
	f->flags = ffi->flags;
	f->size_ns = clock_mono_ns();
	f->mode = in->mode;
	if (fs->o.fio) {
		int rc = file_io_open(fs->o.fio, in, &f->fi);
		if (rc < 0) {
			free(f);
			return rc;
		}
	}
	pthread_mutex_lock(&fs->lock);
	f->next = fs->files;
	if (fs->files)
		fs->files->prev = f;
	fs->files = f;
	if (file_writable(f->flags)) {
		fs->nwr++;
		/* "Cached inline reads": no direct writer beside a page-cache
		 * handle; this one goes through the page cache too */
		if (pc_of_locked(fs, f->ino)) {
			f->pc = 1;
			f->pc_ns = clock_mono_ns();
			fs->npc++;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	ffi->fh = (uint64_t)(uintptr_t)f;
	if (fs->o.keep_cache_ro && (ffi->flags & O_ACCMODE) == O_RDONLY) {
		ffi->direct_io = 0;
		ffi->keep_cache = 1;
	} else {
		ffi->direct_io = !f->pc;
	}
	return 0;
}

/* PARALLEL DIRECT WRITES. Without FOPEN_PARALLEL_DIRECT_WRITES in the open
 * reply the kernel takes the inode lock exclusively around every direct
 * write, so threads writing disjoint ranges of one file queue behind each
 * other. libfuse >= 3.15 sets the flag from fi->parallel_direct_writes;
 * older libfuse (Debian 12 has 3.14) drops unknown open flags, so there the
 * open and create replies are built here from the kernel ABI
 * (<linux/fuse.h>) and sent with fuse_reply_iov, exactly as libfuse lays
 * them out for protocol 7.9 and later. */
#if FUSE_VERSION >= FUSE_MAKE_VERSION(3, 15)
static int reply_open(fuse_req_t req, struct fuse_file_info *ffi)
{
	if (ffi->direct_io)
		ffi->parallel_direct_writes = 1;
	return fuse_reply_open(req, ffi);
}

static int reply_create(fuse_req_t req, const struct fuse_entry_param *e,
                        struct fuse_file_info *ffi)
{
	if (ffi->direct_io)
		ffi->parallel_direct_writes = 1;
	return fuse_reply_create(req, e, ffi);
}
#else
static void open_out(const struct fuse_file_info *ffi, struct fuse_open_out *o)
{
	memset(o, 0, sizeof(*o));
	o->fh = ffi->fh;
	if (ffi->direct_io)
		o->open_flags |= FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
	if (ffi->keep_cache)
		o->open_flags |= FOPEN_KEEP_CACHE;
}

static void timeout_split(double t, uint64_t *sec, uint32_t *nsec)
{
	if (t <= 0) {
		*sec = 0;
		*nsec = 0;
		return;
	}
	*sec = (uint64_t)t;
	*nsec = (uint32_t)((t - (double)*sec) * 1e9);
}

static int reply_open(fuse_req_t req, struct fuse_file_info *ffi)
{
	struct fuse_open_out o;
	open_out(ffi, &o);
	struct iovec iov = {&o, sizeof(o)};
	return fuse_reply_iov(req, &iov, 1);
}

static int reply_create(fuse_req_t req, const struct fuse_entry_param *e,
                        struct fuse_file_info *ffi)
{
	struct fuse_entry_out eo;
	struct fuse_open_out o;
	const struct stat *st = &e->attr;
	memset(&eo, 0, sizeof(eo));
	eo.nodeid = e->ino;
	eo.generation = e->generation;
	timeout_split(e->entry_timeout, &eo.entry_valid, &eo.entry_valid_nsec);
	timeout_split(e->attr_timeout, &eo.attr_valid, &eo.attr_valid_nsec);
	eo.attr.ino = st->st_ino;
	eo.attr.mode = st->st_mode;
	eo.attr.nlink = (uint32_t)st->st_nlink;
	eo.attr.uid = st->st_uid;
	eo.attr.gid = st->st_gid;
	eo.attr.rdev = (uint32_t)st->st_rdev;
	eo.attr.size = (uint64_t)st->st_size;
	eo.attr.blksize = (uint32_t)st->st_blksize;
	eo.attr.blocks = (uint64_t)st->st_blocks;
	eo.attr.atime = (uint64_t)st->st_atim.tv_sec;
	eo.attr.mtime = (uint64_t)st->st_mtim.tv_sec;
	eo.attr.ctime = (uint64_t)st->st_ctim.tv_sec;
	eo.attr.atimensec = (uint32_t)st->st_atim.tv_nsec;
	eo.attr.mtimensec = (uint32_t)st->st_mtim.tv_nsec;
	eo.attr.ctimensec = (uint32_t)st->st_ctim.tv_nsec;
	open_out(ffi, &o);
	struct iovec iov[2] = {{&eo, sizeof(eo)}, {&o, sizeof(o)}};
	return fuse_reply_iov(req, iov, 2);
}
#endif

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *ffi)
{
	if (usrbio_fuse_deny(fs_of(req)->o.usrbio, req, parent))
		return;
	struct fusefs *fs = fs_of(req);
	uint64_t session = 0;
	unsigned mf = open_flags(ffi->flags);
	if (ffi->flags & O_EXCL)
		mf |= META_O_EXCL;
	if (fs->o.fio)
		mf |= META_O_IDATA; /* new files may keep their bytes in meta (file_io.h) */
	struct new_entry ne;
	new_entry_begin(req, parent, &ne);
	struct meta_inode *in = ne.in;
	const struct meta_cred *cr = &ne.cb.c;
	uint32_t m = mode & 07777;
	struct acl_inherit ai;
	int rc = acl_prepare(req, fs, cr, parent, 0, &m, &ai);
	/* Only a node this call makes gets the ACLs (and counts as one change
	 * of the directory, dircache.h), and O_CREAT of an existing file
	 * opens it: try exclusively first. The kernel sends CREATE only for a
	 * name it believes absent, so the second call is rare. */
	int inherit = ai.acc || ai.def;
	if (rc == 0) {
		struct meta_inode dir; /* the parent after the change ("INODE RECORDS") */
		struct dattr_ticket dt = dattr_begin(fs, parent);
		own_begin(fs);
		/* a file this call makes has nothing to cut: a read-only
		 * handle of it needs no write session */
		unsigned xf = file_writable(ffi->flags) ? mf : mf & ~META_O_TRUNC;
		rc = meta_client_create_dir(fs->o.meta, cr, parent, meta_name_c(name), m,
		                            xf | META_O_EXCL, in, &session, &dir);
		if (rc == 0)
			dattr_put(fs, parent, dt, &dir, 0);
		own_end(fs, parent, name, rc, 1);
	}
	if (rc == -EEXIST && !(mf & META_O_EXCL)) {
		inherit = 0;
		rc = meta_client_create(fs->o.meta, cr, parent, meta_name_c(name), m, mf, in,
		                        &session);
	}
	acl_finish(fs, cr, rc == 0 && inherit ? in : NULL, &ai);
	if (rc == 0) {
		dattr_invalidate(fs, in->ino); /* it may have existed (no O_EXCL) */
		rc = file_setup(fs, in, session, ffi);
		if (rc < 0 && session)
			meta_client_close(fs->o.meta, cr, in->ino, session, NULL);
	}
	if (rc < 0) {
		reply_err(req, rc);
	} else {
		struct fuse_entry_param e;
		fill_entry_fi(fs, in, ((struct fusefs_file *)(uintptr_t)ffi->fh)->fi, &e);
		if (!dc_note(fs, parent, name, ne.gen))
			e.entry_timeout = 0;
		/* An interrupted open gets no release from the kernel. */
		if (reply_create(req, &e, ffi) == -ENOENT)
			file_drop(fs, (struct fusefs_file *)(uintptr_t)ffi->fh, cr);
	}
}

/* CACHED INLINE READS. A read-only open of an inline file whose whole
 * bytes came with it (the OPEN's reply or an open-ahead batch) is opened
 * with the kernel's page cache instead of direct I/O, without
 * FOPEN_KEEP_CACHE: the kernel drops the inode's pages at the open, reads
 * the file once (one READ, served from those bytes) and answers the read
 * at the end of the file from the size it has, where direct I/O sent a
 * second READ for those 0 bytes - one synchronous round trip of a
 * small-file read. Coherence stays what it was:
 *   - every open starts with no pages (no KEEP_CACHE), so an open reads
 *     bytes at most read_ahead_ttl_ms old, as before;
 *   - a handle kept open longer has its pages dropped by the sweeper
 *     (pc_main) within read_ahead_ttl_ms of when its bytes were read,
 *     and the cached bytes with them, so its next read asks meta: a
 *     rewrite through another mount shows within the same bound as for
 *     direct I/O reads (README "Open-ahead");
 *   - no direct writer of the file is open here beside a page-cache
 *     handle: a read-only open while a writable handle is open goes
 *     direct, and a writable open while a page-cache handle is open
 *     goes through the page cache itself (write-through, as every
 *     write here). Mixed, the kernel does not order them: a READ
 *     answered with the old size leaves its last page zero-filled past
 *     that size, and a direct write extending the file meanwhile raises
 *     i_size before the reader copies, so it reads zeros where the
 *     write put bytes (test_integ_idata test_readers_while_growing,
 *     once under load). Page-cache writes lock the pages they fill,
 *     which orders them against the READ; truncates drop the pages.
 *     While a writer is open here the sweeper leaves the file's pages
 *     alone: dropping a page that holds a write's bytes before its
 *     WRITE reaches meta would let a READ bring older bytes back. The
 *     kernel still drops them when it learns of a change of size (at
 *     most attr_timeout late), so another mount's appends show when it
 *     reports them; its same-size rewrites show once the writer here
 *     closed (the sweeper) and at the next open. No auto_inval_data
 *     (op_init): its drop on a new mtime raced the page-cache writer.
 * Not with keep_cache_ro (its own page-cache mode) and not when the
 * sweeper did not start (then direct I/O, as before). */
#define PC_SWEEP_MS 50

static void pc_open(struct fusefs *fs, struct fusefs_file *f, struct fuse_file_info *ffi,
                    uint64_t read_ns)
{
	if (!fs->pc_started || !fs->se || fs->o.keep_cache_ro || !ffi->direct_io)
		return;
	pthread_mutex_lock(&fs->lock);
	if (writer_of_locked(fs, f->ino, f)) {
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	f->pc = 1;
	f->pc_ns = read_ns;
	fs->npc++;
	pthread_mutex_unlock(&fs->lock);
	ffi->direct_io = 0;
	ffi->keep_cache = 0;
}

/* STORED PAGES. An open answered from a batch can go one step further:
 * the mount stores the bytes in the kernel's page cache itself
 * (fuse_lowlevel_notify_store) before it replies, with FOPEN_KEEP_CACHE,
 * so the read finds them and sends no READ at all. Only when:
 *   - the kernel's size of the file is the batch's (the lookup was
 *     answered from this very batch and no other attribute reply for the
 *     inode went out since: oa_told), so every page it may read lies in
 *     [0, LEN), which the store overwrites - no older page past the bytes
 *     can be read (the kernel drops pages past a size it learns shrank);
 *   - no other handle of the inode is open on this mount, checked under
 *     fs->lock and held across the store: a READ of another handle could
 *     hold a page lock the store waits for while this thread is the one
 *     reading requests. New handles need fs->lock before their open is
 *     answered, so none appears meanwhile.
 * The handle is a page-cache handle like the others (the sweeper bounds
 * its age); the next open of the file overwrites or drops the pages. */
static int pc_store(struct fusefs *fs, struct fusefs_file *f, const void *buf, uint32_t len,
                    uint64_t read_ns)
{
	if (!f->pc || !oa_told(fs, f->ino, read_ns))
		return 0;
	int rc = -EBUSY;
	size_t seen = 0;
	pthread_mutex_lock(&fs->lock);
	struct fusefs_file *g = fs->files;
	for (; g && seen < 256; g = g->next, seen++)
		if (g != f && g->ino == f->ino)
			break;
	if (!g) {
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
		bv.buf[0].mem = (void *)buf;
		rc = fuse_lowlevel_notify_store(fs->se, f->ino, 0, &bv, 0);
	}
	pthread_mutex_unlock(&fs->lock);
	return rc == 0;
}

/* Drops the pages and cached bytes of every page-cache handle whose bytes
 * may be older than the bound by the next sweep. */
static void pc_sweep(struct fusefs *fs)
{
	uint64_t ttl_ns = (uint64_t)file_io_snapshot_ms(fs->o.fio) * 1000000ull;
	uint64_t margin = 2ull * PC_SWEEP_MS * 1000000ull;
	uint64_t ino[64];
	size_t n = 0;
	uint64_t now = clock_mono_ns();
	pthread_mutex_lock(&fs->lock);
	if (fs->npc)
		for (struct fusefs_file *f = fs->files; f && n < 64; f = f->next) {
			if (!f->pc || now - f->pc_ns + margin < ttl_ns)
				continue;
			/* a page-cache writer's bytes may sit in a page, not yet
			 * at meta: dropped now, a READ would bring back older
			 * ones (see "CACHED INLINE READS") */
			if (writer_of_locked(fs, f->ino, NULL))
				continue;
			/* bytes read from now on are at least this new */
			f->pc_ns = now;
			if (f->fi)
				file_io_invalidate(f->fi);
			ino[n++] = f->ino;
		}
	pthread_mutex_unlock(&fs->lock);
	/* Outside the lock: the kernel may wait here for a READ in flight
	 * on those pages, which the session loop answers. */
	for (size_t i = 0; i < n && !atomic_load(&fs->pc_stop); i++)
		fuse_lowlevel_notify_inval_inode(fs->se, ino[i], 0, 0);
}

static void *pc_main(void *arg)
{
	struct fusefs *fs = arg;
	while (!atomic_load(&fs->pc_stop) && !fuse_session_exited(fs->se)) {
		clock_sleep_ms(PC_SWEEP_MS);
		pc_sweep(fs);
	}
	atomic_store(&fs->pc_done, 1);
	return NULL;
}

static void pc_start(struct fusefs *fs)
{
	if (!fs->o.fio || !fs->se)
		return;
	fs->pc_started = pthread_create(&fs->pc_thread, NULL, pc_main, fs) == 0;
}

/* 0, or -ETIMEDOUT when the sweeper is stuck in a notification (the
 * caller aborts the connection; it is joined then). */
static int pc_stop(struct fusefs *fs, uint32_t wait_ms)
{
	if (!fs->pc_started)
		return 0;
	atomic_store(&fs->pc_stop, 1);
	for (uint32_t t = 0; !atomic_load(&fs->pc_done) && t < wait_ms; t += 10)
		clock_sleep_ms(10);
	return atomic_load(&fs->pc_done) ? 0 : -ETIMEDOUT;
}

static void pc_join(struct fusefs *fs)
{
	if (fs->pc_started)
		pthread_join(fs->pc_thread, NULL);
	fs->pc_started = 0;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *ffi)
{
	if (usrbio_fuse_deny(fs_of(req)->o.usrbio, req, ino))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	uint64_t session = 0;
	struct meta_inode *in = inode_new(req);
	if (!in)
		return;
	req_cred(req, &cb);
	unsigned mf = open_flags(ffi->flags);
	/* OPEN is a fast opcode (fuse_loop.h) for open-ahead's sake: any
	 * other open waits on meta */
	if (mf != META_O_READ || !fs->o.fio)
		fuseloop_will_block();
	/* Linux answers ETXTBSY to an O_TRUNC of a file a program runs, and
	 * cuts nothing. A writable open fails in the kernel before the OPEN;
	 * a read-only one only after it (handle_truncate), but with
	 * atomic_o_trunc this OPEN is what truncates: the program's binary
	 * would be gone under an open that failed. So the check is made
	 * here, against this mount's exec handles (test_integ_posix
	 * test_o_trunc_busy_text). */
	if ((mf & META_O_TRUNC) && !file_writable(ffi->flags) && exec_of(fs, ino)) {
		reply_err(req, -ETXTBSY);
		free(in);
		return;
	}
	if ((ffi->flags & O_ACCMODE) != O_RDONLY || (mf & META_O_TRUNC))
		la_changed(fs);
	if (mf & META_O_TRUNC) {
		int r = report_length(fs, ino);
		if (r < 0) {
			reply_err(req, r);
			free(in);
			return;
		}
	}
	/* An inline file's bytes come with the open: a read right after it
	 * costs no round trip (file_io_idata_prime_at). A read-only open may be
	 * answered from a lookup-ahead batch (open-ahead). */
	struct meta_idata_out d = { .buf = fs->o.fio ? malloc(META_IDATA_MAX) : NULL };
	int has = 0, ahead = 0;
	uint64_t read_ns = 0;
	if (d.buf && mf == META_O_READ &&
	    oa_open(fs, ino, &cb.c, in, d.buf, &d.len, &read_ns)) {
		ahead = has = 1;
	}
	if (!ahead) {
		meta_will_block(fs);
		read_ns = clock_mono_ns(); /* the bytes are at least this new */
	}
	int rc = ahead  ? 0
	         : d.buf ? meta_client_open_idata(fs->o.meta, &cb.c, ino, mf, in, &session, &d, &has)
	                 : meta_client_open(fs->o.meta, &cb.c, ino, mf, in, &session);
	if (rc == 0 && !ahead && has && mf == META_O_READ && fs->oa)
		atomic_store(&fs->oa_want_ns, clock_mono_ns());
	if (mf & META_O_TRUNC)
		dattr_invalidate(fs, ino);
	if (rc == 0) {
		rc = file_setup(fs, in, session, ffi);
		if (rc < 0 && session)
			meta_client_close(fs->o.meta, &cb.c, ino, session, NULL);
	}
	if (rc == 0 && has) {
		struct fusefs_file *f = (struct fusefs_file *)(uintptr_t)ffi->fh;
		if (ahead)
			f->size_ns = read_ns; /* the size is the batch's */
		file_io_idata_prime_at(f->fi, d.buf, d.len, read_ns);
	}
	if (rc == 0 && has && mf == META_O_READ && d.len == in->size) {
		struct fusefs_file *f = (struct fusefs_file *)(uintptr_t)ffi->fh;
		pc_open(fs, f, ffi, read_ns);
		if (ahead && d.len && pc_store(fs, f, d.buf, d.len, read_ns))
			ffi->keep_cache = 1;
	}
	free(d.buf);
	if (rc < 0) {
		reply_ino_err(req, rc);
	} else if (reply_open(req, ffi) == -ENOENT) {
		file_drop(fs, (struct fusefs_file *)(uintptr_t)ffi->fh, &cb.c);
	}
	free(in);
}

/* A read in flight (op_read); the data follows, at BUF. */
struct read_ctx {
	fuse_req_t req;
	fuse_ino_t ino;
	off_t off;
	size_t size;
	char *buf; /* page-aligned: in this allocation, or a pool buffer (read_ctx_new) */
	struct fusefs *fs;
	const void *data; /* the reply's bytes: buf, or a read-ahead unit's */
	void *hold;       /* file_io_read_unref after the reply */
};

/* BUF is page-aligned so that a short-circuit read of whole pages lands
 * there with O_DIRECT (sc_direct.c): no bounce buffer and no copy. */
#define READ_ALIGN 4096u

/* Contexts of reads up to READ_POOL_SZ wait here for reuse (at most
 * READ_POOL_MAX, shared by the process's mounts): taken on a FUSE thread
 * and freed on whichever thread completes the read, they never come back
 * to malloc's per-thread cache, and malloc's general path for their size
 * (over 8 KiB with the alignment slack) showed up as several per cent of
 * the mount's CPU in a 4 KiB random read profile. */
#define READ_POOL_SZ 4096u
#define READ_POOL_MAX 256
static pthread_mutex_t read_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct read_ctx *read_pool[READ_POOL_MAX];
static int read_pool_n;

/* One pooled context kept by each thread ahead of the pool's mutex: a
 * read answered on the FUSE thread (a page-cache hit) frees its context
 * there, and the next read takes it back without the two lock pairs.
 * The key only gives a thread that ends its spare back to the pool. */
static __thread struct read_ctx *read_spare;
static __thread int read_spare_armed; /* read_spare_key set for this thread */
static pthread_key_t read_spare_key;
static pthread_once_t read_spare_once = PTHREAD_ONCE_INIT;
static int read_spare_ok; /* the key exists */

/* Gives pooled context X (NULL: none) to the pool, or to malloc when it
 * is full. */
static void read_pool_put(struct read_ctx *x)
{
	if (!x)
		return;
	pthread_mutex_lock(&read_pool_mu);
	if (read_pool_n < READ_POOL_MAX) {
		read_pool[read_pool_n++] = x;
		x = NULL;
	}
	pthread_mutex_unlock(&read_pool_mu);
	free(x);
}

static void read_spare_drop(void *unused)
{
	(void)unused;
	struct read_ctx *x = read_spare;
	read_spare = NULL;
	read_pool_put(x);
}

static void read_spare_init(void)
{
	read_spare_ok = pthread_key_create(&read_spare_key, read_spare_drop) == 0;
}

/* Reads of more than READ_BIG_MIN bytes (up to IOBUF_SIZE) read into a
 * buffer of the process's pool (common/iobuf.h), apart from their
 * context: a 1 MiB malloc per read fragmented the heap (it grew by
 * hundreds of MB per pass of 4-job sequential reads) and cost 3 % of the
 * mount's CPU in _int_malloc. Most such buffers are never touched (the
 * reply goes from a read-ahead unit), so a pooled one costs no memory
 * until a read lands in it. */
#define READ_BIG_MIN (64u << 10)

/* A context for a read of SIZE bytes, its page-aligned x->buf set, or
 * NULL. */
static struct read_ctx *read_ctx_new(size_t size)
{
	struct read_ctx *x = NULL;
	if (size > READ_BIG_MIN && size <= IOBUF_SIZE) {
		if (!(x = malloc(sizeof(*x))))
			return NULL;
		if (!(x->buf = iobuf_get())) {
			free(x);
			return NULL;
		}
		return x;
	}
	if (size <= READ_POOL_SZ) {
		if ((x = read_spare)) {
			read_spare = NULL;
		} else {
			pthread_mutex_lock(&read_pool_mu);
			if (read_pool_n)
				x = read_pool[--read_pool_n];
			pthread_mutex_unlock(&read_pool_mu);
		}
		size = READ_POOL_SZ;
	}
	if (!x && !(x = malloc(sizeof(*x) + READ_ALIGN + (size ? size : 1))))
		return NULL;
	x->buf = (char *)(((uintptr_t)(x + 1) + READ_ALIGN - 1) & ~(uintptr_t)(READ_ALIGN - 1));
	return x;
}

static void read_ctx_free(struct read_ctx *x)
{
	if (x->size > READ_BIG_MIN && x->size <= IOBUF_SIZE) {
		iobuf_put(x->buf);
	} else if (x->size <= READ_POOL_SZ) {
		if (!read_spare) {
			if (!read_spare_armed) {
				/* the key's value only arms its destructor */
				pthread_once(&read_spare_once, read_spare_init);
				read_spare_armed =
				    read_spare_ok &&
				    !pthread_setspecific(read_spare_key, &read_spare_key);
			}
			if (read_spare_armed) {
				read_spare = x;
				return;
			}
		}
		read_pool_put(x);
		return;
	}
	free(x);
}

/* file_io_read_async's completion: replies and frees. Any thread. */
static void read_reply(void *arg, ssize_t n)
{
	struct read_ctx *x = arg;
	if (n == -CFS_ECORRUPT) /* the storage client tried every replica */
		LOG_ERR("fuse", "read: data corrupt on every replica: ino=%llu off=%lld size=%zu",
		        (unsigned long long)x->ino, (long long)x->off, x->size);
	if (n < 0)
		reply_err(x->req, (int)n);
	else
		fuse_reply_buf(x->req, x->data, (size_t)n);
	file_io_read_unref(x->fs->o.fio, x->hold);
	read_ctx_free(x);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *ffi)
{
	struct fusefs *fs = fs_of(req);
	struct fusefs_file *f = (struct fusefs_file *)(uintptr_t)ffi->fh;
	if (!f->fi) {
		fuse_reply_err(req, EIO);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (size > FUSEFS_MAX_IO)
		size = FUSEFS_MAX_IO;
	/* Another client may have made the file longer: ask meta before
	 * cutting a read short at the size we know, unless that size came
	 * from meta within attr_timeout (the bound the kernel's attribute
	 * cache gives every other client too): a small file read to its end
	 * right after open costs no extra round trip. */
	uint64_t fsize;
	int wont_wait = file_io_read_wont_wait(fs->o.fio, f->fi, (uint64_t)off, size, &fsize);
	if ((uint64_t)off + size > fsize &&
	    (double)(clock_mono_ns() - f->size_ns) / 1e9 >= fs->o.attr_timeout) {
		meta_will_block(fs);
		struct meta_inode *in = malloc(sizeof(*in));
		struct meta_cred cr = {0, 0, 0, NULL};
		if (in && meta_client_getattr(fs->o.meta, &cr, ino, in) == 0) {
			file_io_update(f->fi, in);
			f->size_ns = clock_mono_ns();
		}
		free(in);
	}
	struct read_ctx *x = read_ctx_new(size);
	if (!x) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	x->req = req;
	x->ino = ino;
	x->off = off;
	x->size = size;
	x->fs = fs;
	/* READ is a fast opcode (fuse_loop.h): cached inline bytes, bytes in
	 * a finished read-ahead unit, and a small chunk read that goes out
	 * asynchronously (a 4 KiB random read) are served without handing the
	 * reading over; the next READ of a deep queue is read at once. (Asked
	 * with the size, before the getattr above: a getattr that waits hands
	 * the reading over itself, and the size it brings changes no hint.) */
	if (!wont_wait)
		fuseloop_will_block();
	/* The reply goes out from whichever thread completes the read (for a
	 * one-piece read the storage client's loop thread): this thread goes
	 * back to /dev/fuse at once and nobody is woken to hand data over. */
	/* Bytes a read-ahead unit holds whole go from there (no copy). */
	file_io_read_async_ref(fs->o.fio, f->fi, (uint64_t)off, size, x->buf, &x->data, &x->hold,
	                       read_reply, x);
}

/* A write by a caller without CAP_FSETID drops the file's set-id bits
 * (the kernel leaves this to the file system for direct I/O): once per
 * handle that saw them at open, before the first write lands. */
static int kill_privs(fuse_req_t req, struct fusefs *fs, struct fusefs_file *f)
{
	struct cred_buf cb;
	req_cred(req, &cb);
	f->privs_killed = 1;
	if (cb.c.uid == 0)
		return 0;
	struct meta_setattr sa;
	memset(&sa, 0, sizeof(sa));
	sa.valid = META_SET_KILL_SUIDGID | META_SET_FD_WRITE;
	struct meta_inode *in = malloc(sizeof(*in));
	if (!in)
		return -ENOMEM;
	int rc = meta_client_setattr(fs->o.meta, &cb.c, f->ino, &sa, in);
	dattr_drop_all(fs);
	free(in);
	if (rc == 0 && fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, f->ino, -1, 0);
	return rc;
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *ffi)
{
	struct fusefs *fs = fs_of(req);
	struct fusefs_file *f = (struct fusefs_file *)(uintptr_t)ffi->fh;
	ssize_t n;
	if (!f->fi) {
		fuse_reply_err(req, EIO);
		return;
	}
	/* WRITE may be served by the thread that read it (fuse_loop.c
	 * fl_fast): only an inline write within the threshold runs in this
	 * process without waiting (meta's in-process store; its own waits
	 * hand over through block_hint_wait). Anything else (chunks, a
	 * conversion, the setattr and inode invalidation of kill_privs, an
	 * append, whose lock a converting append may hold while it waits on
	 * storage) waits on RPCs or the kernel: let another thread read
	 * first. */
	if (!file_io_idata_on(f->fi) || off < 0 || (uint64_t)off > META_IDATA_MAX ||
	    size > META_IDATA_MAX - (uint64_t)off || ((f->mode & 06000) && !f->privs_killed) ||
	    (f->flags & O_APPEND))
		fuseloop_will_block();
	if ((f->mode & 06000) && !f->privs_killed) {
		int rc = kill_privs(req, fs, f);
		if (rc < 0) {
			reply_err(req, rc);
			return;
		}
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* A write served inline returns the inode as meta read it after the
	 * commit: the kernel drops the file's attributes after every write
	 * and asks for them at the next fstat (git, cp, editors do one per
	 * file), so keep them for that GETATTR like a directory's. */
	struct meta_inode *attr = fs->o.attr_timeout > 0 && file_io_idata_on(f->fi)
	                              ? malloc(sizeof(*attr))
	                              : NULL;
	struct dattr_ticket t = dattr_begin(fs, ino);
	if (f->flags & O_APPEND) {
		file_io_append_lock(f->fi);
		n = file_io_write_attr(fs->o.fio, f->fi, file_io_size(f->fi), size, buf, attr);
		file_io_append_unlock(f->fi);
	} else if ((f->flags & O_DSYNC) || attr) {
		/* O_SYNC and O_DSYNC: durable on return; an inline file is
		 * written through meta whatever the mode */
		n = file_io_write_attr(fs->o.fio, f->fi, (uint64_t)off, size, buf, attr);
	} else {
		n = file_io_write_behind(fs->o.fio, f->fi, (uint64_t)off, size, buf);
	}
	if (n >= 0 && attr && attr->ino == ino)
		dattr_put(fs, ino, t, attr, 0);
	else
		dattr_forget(fs, ino);
	free(attr);
	if (n < 0)
		reply_err(req, (int)n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void lock_flush(struct fusefs *fs, uint64_t ino, uint64_t owner);

/* fallocate(2). Storage allocates chunk space when data is written, so
 * there is nothing to reserve: mode 0 only extends the size, KEEP_SIZE
 * alone does nothing. PUNCH_HOLE and ZERO_RANGE make the range inside the
 * file read as zeros: whole chunks are removed from storage (their space
 * comes back), the partial chunks at the edges get zeros written
 * (file_io_punch). COLLAPSE_RANGE, INSERT_RANGE
 * and UNSHARE_RANGE would move data between chunks: EOPNOTSUPP. */
static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                         struct fuse_file_info *ffi)
{
	struct fusefs *fs = fs_of(req);
	struct fusefs_file *f = (struct fusefs_file *)(uintptr_t)ffi->fh;
	const int known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
	int rc = 0;
	la_changed(fs);
	if (!f || !f->fi) {
		fuse_reply_err(req, EIO);
		return;
	}
	if (mode & ~known) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (off < 0 || len <= 0 || (uint64_t)off + (uint64_t)len < (uint64_t)off) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if ((f->mode & 06000) && !f->privs_killed)
		rc = kill_privs(req, fs, f);
	if (rc == 0)
		rc = file_io_drain(f->fi); /* zeros land after queued writes */
	uint64_t end = (uint64_t)off + (uint64_t)len;
	if (rc == 0 && (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) {
		uint64_t zend = end, size = file_io_size(f->fi);
		if ((mode & FALLOC_FL_KEEP_SIZE) && zend > size)
			zend = size; /* nothing to zero past the end */
		if ((uint64_t)off < zend)
			rc = file_io_punch(fs->o.fio, f->fi, (uint64_t)off, zend - (uint64_t)off);
	}
	if (rc == 0 && !(mode & FALLOC_FL_KEEP_SIZE) && end > file_io_size(f->fi)) {
		struct cred_buf cb;
		struct meta_setattr sa;
		struct meta_inode *in = malloc(sizeof(*in));
		memset(&sa, 0, sizeof(sa));
		sa.valid = META_SET_SIZE | META_SET_FD_WRITE;
		sa.size = end;
		req_cred(req, &cb);
		rc = in ? report_length(fs, ino) : -ENOMEM;
		if (rc == 0) {
			rc = setattr_call(fs, &cb.c, ino, &sa, in);
			dattr_drop_all(fs);
		}
		if (rc == 0)
			file_io_update(f->fi, in);
		free(in);
	}
	fuse_reply_err(req, to_errno(rc));
}

/* 1 when flushing or releasing F waits on nothing (FLUSH and RELEASE are
 * fast opcodes, fuse_loop.h), so the reading thread answers it and reads
 * on without waking another: no write-behind write queued and no length
 * to report (file_io_settled), a session the closer takes (closer.h), and
 * no locks held by this mount. A create+close of an empty file handed the
 * reading over twice here (4 of its ~10 context switches, each a wait for
 * a CPU on a loaded machine: issue 13). A call that turns out to block
 * anyway (the closer's queue full) hands over at that point. */
static int lk_none(struct fusefs *fs);

static int file_quiet(struct fusefs *fs, const struct fusefs_file *f)
{
	return f && f->fi && !(f->session && !fs->closer) && lk_none(fs) &&
	       file_io_settled(f->fi);
}

/* WHY EVERY CLOSE FLUSHES. FLUSH is one synchronous round trip of every
 * create+close, and the kernel skips it for a handle opened with
 * FOPEN_NOFLUSH (writeback cache is off here, so the flag is honoured).
 * No handle gets it, not even a create's that never writes: FLUSH is the
 * only sign of a close(2) the mount gets, and close(2) of any descriptor
 * of a file drops every POSIX lock the closing process holds on it. Those
 * locks are meta's, not the kernel's (it records none, and fuse_setlk
 * leaves unlock-on-close to the flush), and the process may take one
 * after the open, through another descriptor; a handle's open flags
 * cannot change after the open, and RELEASE is no substitute (sent after
 * close(2) returned, only at the last close of the description, and
 * without the POSIX owner). So the mount can never know at open time
 * that skipping the flush will be safe
 * (test_integ_creates.c test_create_fd_close_drops_other_fds_lock). The
 * length report below (close-to-open) would also need every write
 * through such a handle to reach meta before it returns. */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *ffi)
{
	struct fusefs *fs = fs_of(req);
	struct fusefs_file *f = (struct fusefs_file *)(uintptr_t)ffi->fh;
	if (!f || !f->fi) {
		fuseloop_will_block();
		lock_flush(fs, ino, ffi->lock_owner);
		fuse_reply_err(req, to_errno(report_length(fs, ino)));
		return;
	}
	/* The handle holds its inode state (file_setup to file_drop; the
	 * kernel sends RELEASE after this FLUSH is answered): no lookup by
	 * INO, and the drain and the length in one hold of its lock. Nothing
	 * written and no locks: nothing waits and nothing is sent, and the
	 * reading stays with this thread (file_quiet's conditions, minus the
	 * session's, which only the release closes). */
	struct meta_length len;
	int werr = 0;
	int news = file_io_drain_unreported(f->fi, 0, &len, &werr);
	int locks = !lk_none(fs);
	if (news || locks)
		fuseloop_will_block();
	if (news < 0)
		news = file_io_drain_unreported(f->fi, 1, &len, &werr);
	/* close(2) drops the process's POSIX locks on the file. */
	if (locks)
		lock_flush(fs, ino, ffi->lock_owner);
	/* close(2) returns after this: make the length visible to every
	 * client now, not when the asynchronous release arrives. */
	int rc = news ? report_taken(fs, f->fi, ino, &len) : 0;
	fuse_reply_err(req, to_errno(werr ? werr : rc));
}

/* fsync and fdatasync: the data is durable on every replica when a write
 * is acknowledged; the length and every metadata change committed so far
 * must be durable too before we answer (meta may commit without a sync
 * and sync in the background, as ext4 does: README "Durability"). */
static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *ffi)
{
	fuse_reply_err(req, to_errno(report_length_how(fs_of(req), ino, 1)));
}

static int lock_note(struct fusefs *fs, struct fusefs_file *f, uint64_t owner);

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *ffi)
{
	struct meta_cred cr = {0, 0, 0, NULL};
	struct fusefs *fs = fs_of(req);
	struct fusefs_file *f = (struct fusefs_file *)(uintptr_t)ffi->fh;
	/* A write session the closer ends (every create's): file_drop's
	 * drain and length check taken here, without waiting, in one hold of
	 * the inode's lock, and file_quiet's answer read from it (nothing to
	 * wait for, nothing unreported) rather than from a hold of its own. */
	int taken = -1;
	struct meta_length len;
	if (!ffi->flock_release && f && f->fi && f->session && fs->closer && lk_none(fs)) {
		int werr;
		taken = file_io_drain_unreported(f->fi, 0, &len, &werr);
		if (taken < 0)
			taken = -1; /* a write in flight: file_drop waits for it */
		if (taken)
			fuseloop_will_block();
	} else if (ffi->flock_release || !file_quiet(fs, f)) {
		fuseloop_will_block();
	}
	/* The flock owner the kernel names here is the file's own id; drop
	 * its locks with the others recorded on the handle. */
	if (ffi->flock_release)
		lock_note(fs, f, ffi->lock_owner);
	file_drop_taken(fs, f, &cr, taken);
	fuse_reply_err(req, 0);
}

static void dir_unlink(struct fusefs *fs, struct fusefs_dir *d)
{
	pthread_mutex_lock(&fs->lock);
	if (d->prev)
		d->prev->next = d->next;
	else
		fs->dirs = d->next;
	if (d->next)
		d->next->prev = d->prev;
	pthread_mutex_unlock(&fs->lock);
}

static void dir_free(struct fusefs_dir *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->e[i].name);
	free(d->e);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* Fetches the next page of D's listing; caller holds d->lock. */
static int dir_fill(struct fusefs *fs, const struct meta_cred *cr, struct fusefs_dir *d)
{
	struct meta_dirent *ents = malloc(FUSEFS_PAGE * sizeof(*ents));
	int n = 0, eof = 0;
	if (!ents)
		return -ENOMEM;
	struct meta_name cursor = {"", 0};
	if (d->n)
		cursor = meta_name_c(d->e[d->n - 1].name);
	int rc = meta_client_readdir(fs->o.meta, cr, d->ino, cursor, ents, FUSEFS_PAGE, &n, &eof);
	if (rc == 0 && d->n + (size_t)n > d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		while (cap < d->n + (size_t)n)
			cap *= 2;
		struct fusefs_dirent *e = realloc(d->e, cap * sizeof(*e));
		if (!e)
			rc = -ENOMEM;
		else {
			d->e = e;
			d->cap = cap;
		}
	}
	for (int i = 0; rc == 0 && i < n; i++) {
		char *name = strdup(ents[i].name);
		if (!name) {
			rc = -ENOMEM;
			break;
		}
		d->e[d->n++] = (struct fusefs_dirent){ents[i].ino, ents[i].type, name};
	}
	if (rc == 0)
		d->eof = eof || n == 0;
	free(ents);
	return rc;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *ffi)
{
	if (usrbio_fuse_opendir(fs_of(req)->o.usrbio, req, ino, ffi))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	struct fusefs_dir *d = calloc(1, sizeof(*d));
	struct meta_inode *in = inode_new(req);
	if (!in || !d) {
		if (in)
			fuse_reply_err(req, ENOMEM);
		free(in);
		free(d);
		return;
	}
	pthread_mutex_init(&d->lock, NULL);
	d->ino = ino;
	req_cred(req, &cb);
	int rc = meta_client_getattr(fs->o.meta, &cb.c, ino, in);
	if (rc == 0 && in->type != META_T_DIR)
		rc = -ENOTDIR;
	d->parent = rc == 0 ? in->parent : ino;
	d->gen = dc_begin(fs, ino);
	/* The first page now, so that a permission error fails opendir. */
	if (rc == 0)
		rc = dir_fill(fs, &cb.c, d);
	free(in);
	if (rc < 0) {
		dir_free(d);
		reply_err(req, rc);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	d->next = fs->dirs;
	if (fs->dirs)
		fs->dirs->prev = d;
	fs->dirs = d;
	pthread_mutex_unlock(&fs->lock);
	ffi->fh = (uint64_t)(uintptr_t)d;
	if (fuse_reply_open(req, ffi) == -ENOENT) {
		dir_unlink(fs, d);
		dir_free(d);
	}
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *ffi, int plus)
{
	struct fusefs *fs = fs_of(req);
	struct fusefs_dir *d = (struct fusefs_dir *)(uintptr_t)ffi->fh;
	struct cred_buf cb;
	struct meta_inode *in = NULL;
	char *buf = malloc(size);
	size_t used = 0;
	int rc = 0;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	req_cred(req, &cb);
	pthread_mutex_lock(&d->lock);
	for (off_t pos = off < 0 ? 0 : off;; pos++) {
		const char *name;
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		if (pos == 0 || pos == 1) {
			name = pos == 0 ? "." : "..";
			e.attr.st_ino = pos == 0 ? d->ino : d->parent;
			e.attr.st_mode = S_IFDIR;
		} else {
			size_t k = (size_t)(pos - 2);
			while (k >= d->n && !d->eof && rc == 0)
				rc = dir_fill(fs, &cb.c, d);
			if (rc < 0 || k >= d->n)
				break;
			name = d->e[k].name;
			e.attr.st_ino = d->e[k].ino;
			e.attr.st_mode = type_bits(d->e[k].type);
			if (plus && k < (size_t)fs->o.readdirplus_attrs) {
				if (!in && !(in = malloc(sizeof(*in)))) {
					rc = -ENOMEM;
					break;
				}
				/* Gone since the listing: list it without attributes. */
				if (meta_client_getattr(fs->o.meta, &cb.c, d->e[k].ino, in) == 0) {
					fill_entry(fs, in, &e);
					if (!dc_note(fs, d->ino, name, d->gen))
						e.entry_timeout = 0;
				}
			}
		}
		size_t need;
		if (plus)
			need =
			    fuse_add_direntry_plus(req, buf + used, size - used, name, &e, pos + 1);
		else
			need =
			    fuse_add_direntry(req, buf + used, size - used, name, &e.attr, pos + 1);
		if (need > size - used)
			break;
		used += need;
	}
	pthread_mutex_unlock(&d->lock);
	free(in);
	if (rc < 0 && used == 0)
		reply_err(req, rc);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *ffi)
{
	if (usrbio_fuse_readdir(fs_of(req)->o.usrbio, req, ino, size, off, 0))
		return;
	do_readdir(req, ino, size, off, ffi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *ffi)
{
	if (usrbio_fuse_readdir(fs_of(req)->o.usrbio, req, ino, size, off, 1))
		return;
	do_readdir(req, ino, size, off, ffi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *ffi)
{
	if (usrbio_fuse_releasedir(fs_of(req)->o.usrbio, req, ino))
		return;
	struct fusefs_dir *d = (struct fusefs_dir *)(uintptr_t)ffi->fh;
	dir_unlink(fs_of(req), d);
	dir_free(d);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *ffi)
{
	/* entries are committed when their call returns; fsync makes them
	 * durable (see op_fsync) */
	struct fusefs *fs = fs_of(req);
	struct meta_cred cr = {0, 0, 0, NULL};
	fuse_reply_err(req, to_errno(meta_client_fsync(fs->o.meta, &cr, ino, NULL, NULL)));
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	struct meta_statfs sf;
	req_cred(req, &cb);
	int rc = meta_client_statfs(fs->o.meta, &cb.c, &sf);
	if (rc < 0) {
		reply_err(req, rc);
		return;
	}
	struct statvfs st;
	memset(&st, 0, sizeof(st));
	st.f_bsize = 1 << 20;
	st.f_frsize = 4096;
	st.f_blocks = sf.total_bytes / 4096;
	st.f_bfree = sf.free_bytes / 4096;
	st.f_bavail = st.f_bfree;
	st.f_files = sf.ids_allocated + (1ull << 32);
	st.f_ffree = 1ull << 32;
	st.f_favail = st.f_ffree;
	st.f_namemax = META_NAME_MAX;
	fuse_reply_statfs(req, &st);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
	if (usrbio_fuse_deny(fs_of(req)->o.usrbio, req, ino))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	unsigned mf = 0;
	if (flags & XATTR_CREATE)
		mf |= META_XATTR_CREATE;
	if (flags & XATTR_REPLACE)
		mf |= META_XATTR_REPLACE;
	req_cred(req, &cb);
	int acc = !strcmp(name, META_ACL_ACCESS);
	if (acc && fs->test_acc_set_delay_ms)
		clock_sleep_ms(fs->test_acc_set_delay_ms);
	int rc = meta_client_setxattr(fs->o.meta, &cb.c, ino, meta_name_c(name), value, size, mf);
	if (acc)
		acc_none_drop(fs, ino);
	dattr_drop_all(fs);
	if (!strcmp(name, META_ACL_DEFAULT))
		acl_none_set(fs, ino, 0, 0);
	fuse_reply_err(req, to_errno(rc));
}

/* The reply buffer of a getxattr or listxattr of SIZE bytes: NULL for
 * SIZE 0 (the caller asks how large). -ENOMEM after replying ENOMEM. */
static int xattr_buf_new(fuse_req_t req, size_t size, char **buf)
{
	*buf = NULL;
	if (size && !(*buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return -ENOMEM;
	}
	return 0;
}

/* Answers a getxattr or listxattr of SIZE with RC, meta's length or error,
 * and the bytes in BUF (xattr_buf_new), which it frees. */
static void reply_xattr_result(fuse_req_t req, int rc, char *buf, size_t size)
{
	if (rc < 0)
		reply_err(req, rc);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)rc);
	else
		fuse_reply_buf(req, buf, (size_t)rc);
	free(buf);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	if (usrbio_fuse_xattr(fs_of(req)->o.usrbio, req, ino, 0, size))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	char *buf;
	if (xattr_buf_new(req, size, &buf) < 0)
		return;
	int acc = fs->acl && !strcmp(name, META_ACL_ACCESS);
	uint64_t gen = 0, t0 = 0;
	if (acc) {
		if (acc_none_get(fs, ino, &gen)) { /* anyone may read an ACL: no check */
			free(buf);
			fuse_reply_err(req, ENODATA);
			return;
		}
		t0 = clock_mono_ns();
	}
	meta_will_block(fs); /* GETXATTR is a fast opcode (fuse_loop.c) */
	req_cred(req, &cb);
	int rc = meta_client_getxattr(fs->o.meta, &cb.c, ino, meta_name_c(name), buf, size);
	if (acc && rc == -ENODATA)
		acc_none_put(fs, ino, gen, t0);
	reply_xattr_result(req, rc, buf, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	if (usrbio_fuse_xattr(fs_of(req)->o.usrbio, req, ino, 1, size))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	char *buf;
	if (xattr_buf_new(req, size, &buf) < 0)
		return;
	req_cred(req, &cb);
	int rc = meta_client_listxattr(fs->o.meta, &cb.c, ino, buf, size);
	reply_xattr_result(req, rc, buf, size);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	if (usrbio_fuse_deny(fs_of(req)->o.usrbio, req, ino))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	req_cred(req, &cb);
	int acc = !strcmp(name, META_ACL_ACCESS);
	if (acc && fs->test_acc_set_delay_ms)
		clock_sleep_ms(fs->test_acc_set_delay_ms);
	int rc = meta_client_removexattr(fs->o.meta, &cb.c, ino, meta_name_c(name));
	if (acc)
		acc_none_drop(fs, ino);
	dattr_drop_all(fs);
	if (!strcmp(name, META_ACL_DEFAULT))
		acl_none_set(fs, ino, 0, 0);
	fuse_reply_err(req, to_errno(rc));
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	if (usrbio_fuse_access(fs_of(req)->o.usrbio, req, ino))
		return;
	struct fusefs *fs = fs_of(req);
	struct cred_buf cb;
	int rc;
	req_cred(req, &cb);
	if (mask == F_OK) {
		struct meta_inode *in = inode_new(req);
		if (!in)
			return;
		rc = meta_client_getattr(fs->o.meta, &cb.c, ino, in);
		free(in);
	} else {
		rc = meta_client_access(fs->o.meta, &cb.c, ino, mask & (R_OK | W_OK | X_OK));
	}
	fuse_reply_err(req, to_errno(rc));
}

/* ---- Locks ----
 *
 * flock(2), POSIX record locks and OFD locks live in meta (meta_lock.h),
 * so they hold across mounts: this mount is the holder's client (its meta
 * client id = its mgmtd node id) and the kernel's lock_owner the owner.
 * POSIX locks come with the process's files table as owner, OFD and flock
 * locks with the open file description's; the kernel hands both range
 * kinds to setlk, and flock(2) to flock.
 *
 * Release. Each handle records the owners that took locks through it.
 * flush (every close(2)) names the closing process's owner: its POSIX
 * locks on the file go (POSIX: closing any descriptor of a file drops all
 * of the process's locks on it), and the owner leaves every handle's
 * record. At release (the last close of the open file description) any
 * owner still recorded is the description's own (OFD or flock locks):
 * they go too. A mount that dies loses its locks when meta prunes its
 * client (meta_service.c). Nothing is sent on close for files never
 * locked through this mount.
 *
 * Waiting. F_SETLKW and flock without LOCK_NB retry on -EAGAIN with a
 * backoff of 1 ms doubling to 100 ms, until the lock is granted or the
 * kernel interrupts the request (a signal: EINTR). No deadlock detection
 * across mounts, and no fairness between waiters (docs/posix.md). */

#define LOCK_WAIT_MIN_US 1000
#define LOCK_WAIT_MAX_US 100000

/* Records OWNER on F (idempotent). 0 or -ENOMEM. */
static int lock_note(struct fusefs *fs, struct fusefs_file *f, uint64_t owner)
{
	int rc = 0;
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < f->nlk; i++)
		if (f->lk_owners[i] == owner)
			goto out;
	if (f->nlk == f->lk_cap) {
		size_t nc = f->lk_cap ? 2 * f->lk_cap : 4;
		uint64_t *v = realloc(f->lk_owners, nc * sizeof(*v));
		if (!v) {
			rc = -ENOMEM;
			goto out;
		}
		f->lk_owners = v;
		f->lk_cap = nc;
	}
	if (f->nlk++ == 0)
		atomic_fetch_add(&fs->nlk_files, 1);
	f->lk_owners[f->nlk - 1] = owner;
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* Removes OWNER from F's record; 1 when it was there. fs->lock held. */
static int lock_forget(struct fusefs *fs, struct fusefs_file *f, uint64_t owner)
{
	for (size_t i = 0; i < f->nlk; i++)
		if (f->lk_owners[i] == owner) {
			f->lk_owners[i] = f->lk_owners[--f->nlk];
			if (f->nlk == 0)
				atomic_fetch_sub(&fs->nlk_files, 1);
			return 1;
		}
	return 0;
}

/* 1 when no handle has a lock owner recorded. Read without fs->lock
 * (the close path: FLUSH and RELEASE of every create): a lock request
 * records its owner (lock_note: nlk_files 0 -> 1, a release store under
 * fs->lock) before it asks meta, so before the reply that grants it is
 * written to the kernel; a close(2) the locking process makes after that
 * reaches this mount through the same kernel connection, whose queue lock
 * orders the reply's write before the close's read, and this acquire load
 * sees the count. A close racing with a request still unanswered may read
 * 0: the order it could also have taken under fs->lock (the close first,
 * lock_note after it), where it did not see the owner either. */
static int lk_none(struct fusefs *fs)
{
	return atomic_load_explicit(&fs->nlk_files, memory_order_acquire) == 0;
}

static void lock_flush(struct fusefs *fs, uint64_t ino, uint64_t owner)
{
	int found = 0;
	if (lk_none(fs))
		return;
	pthread_mutex_lock(&fs->lock);
	if (fs->nlk_files)
		for (struct fusefs_file *f = fs->files; f; f = f->next)
			if (f->ino == ino)
				found |= lock_forget(fs, f, owner);
	pthread_mutex_unlock(&fs->lock);
	if (!found)
		return;
	int rc =
	    meta_client_lock_release(fs->o.meta, ino, owner, META_LOCK_KIND_BIT(META_LOCK_POSIX));
	if (rc < 0) /* meta prunes them with the mount at worst */
		LOG_WARN("fuse", "lock release at close failed: ino=%llu: %s",
		         (unsigned long long)ino, cfs_strerror(rc));
}

static void lock_drop_file(struct fusefs *fs, struct fusefs_file *f)
{
	/* No file has a record, so F has none: at its release no request on
	 * F is in flight (the kernel releases after the last one), and its
	 * own lock_note happened before (lk_none). */
	while (!lk_none(fs)) {
		uint64_t owner;
		pthread_mutex_lock(&fs->lock);
		if (f->nlk == 0) {
			pthread_mutex_unlock(&fs->lock);
			break;
		}
		owner = f->lk_owners[f->nlk - 1];
		lock_forget(fs, f, owner);
		pthread_mutex_unlock(&fs->lock);
		int rc = meta_client_lock_release(fs->o.meta, f->ino, owner, META_LOCK_ALL_KINDS);
		if (rc < 0)
			LOG_WARN("fuse", "lock release failed: ino=%llu: %s",
			         (unsigned long long)f->ino, cfs_strerror(rc));
	}
	free(f->lk_owners);
	f->lk_owners = NULL;
	f->lk_cap = 0;
}

/* struct flock (SEEK_SET, as libfuse hands it) to a meta lock. */
static int lock_from_flock(const struct flock *fl, uint64_t owner, struct meta_lock *l)
{
	memset(l, 0, sizeof(*l));
	l->owner = owner;
	l->pid = (uint32_t)fl->l_pid;
	l->kind = META_LOCK_POSIX;
	switch (fl->l_type) {
	case F_RDLCK:
		l->type = META_LOCK_RD;
		break;
	case F_WRLCK:
		l->type = META_LOCK_WR;
		break;
	case F_UNLCK:
		l->type = META_LOCK_UN;
		break;
	default:
		return -EINVAL;
	}
	if (fl->l_start < 0 || fl->l_len < 0)
		return -EINVAL;
	l->start = (uint64_t)fl->l_start;
	/* libfuse turns the kernel's OFFSET_MAX end into l_len 0. */
	l->end = fl->l_len == 0 ? META_LOCK_EOF : (uint64_t)fl->l_start + (uint64_t)fl->l_len - 1;
	return 0;
}

/* Sets L, waiting while it conflicts when WAIT. */
static int lock_set_wait(fuse_req_t req, struct fusefs *fs, uint64_t ino, const struct meta_lock *l,
                         int wait)
{
	unsigned us = LOCK_WAIT_MIN_US;
	for (;;) {
		int rc = meta_client_lock_set(fs->o.meta, ino, l);
		if (rc != -EAGAIN || !wait)
			return rc;
		if (fuse_req_interrupted(req))
			return -EINTR;
		/* The session stops: libfuse joins this worker before it
		 * unmounts, and a lock nobody released kept a SIGTERMed mount
		 * alive until it was. (Not -EINTR: the kernel turns that into a
		 * restart, which leaks as errno 512 without a signal.) */
		if (fs->se && fuse_session_exited(fs->se))
			return -ENOLCK;
		usleep(us);
		us = us * 2 < LOCK_WAIT_MAX_US ? us * 2 : LOCK_WAIT_MAX_US;
	}
}

/* A granted lock is where programs that share a file across hosts (SQLite,
 * anything using fcntl locks as a mutex) start trusting what they read:
 * drop this mount's cached attributes of the file and the size the handle
 * knows, so the first fstat or read after the lock asks meta, as a local
 * disk would show another process's writes at once; read-ahead fetched
 * before the lock is not served either. The file's pages go too (the
 * lock request is not a fast one, so the session loop reads on meanwhile
 * and a READ or a write-back holding one of those pages is answered). */
static void lock_granted(struct fusefs *fs, fuse_ino_t ino, struct fusefs_file *f)
{
	la_changed(fs); /* attributes too: what was committed before the grant */
	/* Names too: every change committed before the grant is queued for
	 * the kernel (dircache.h: the notifier tells it; this worker must not
	 * wait for that, it may have to answer the request that holds the
	 * directory's lock). */
	if (fs->dc)
		dircache_sync(fs->dc);
	if (f)
		f->size_ns = 0;
	dattr_forget(fs, ino);
	if (f && f->fi)
		file_io_invalidate(f->fi);
	/* Pages of any handle, not only of page-cache ones ("Cached inline
	 * reads"): a shared mmap of a direct-I/O handle
	 * (FUSE_DIRECT_IO_ALLOW_MMAP) keeps the file's pages, and without
	 * auto_inval_data (op_init) nothing else drops them when another
	 * mount rewrote the file under the lock (SQLite with mmap_size). The
	 * kernel writes a mapping's dirty pages back before it drops them. */
	if (fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);
}

static void op_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *ffi, struct flock *fl)
{
	struct fusefs *fs = fs_of(req);
	struct meta_lock l, held;
	int rc = lock_from_flock(fl, ffi->lock_owner, &l);
	if (rc == 0)
		rc = meta_client_lock_get(fs->o.meta, ino, &l, &held);
	if (rc < 0) {
		reply_err(req, rc);
		return;
	}
	struct flock out = *fl;
	if (rc == 0) {
		out.l_type = F_UNLCK;
	} else {
		out.l_type = held.type == META_LOCK_WR ? F_WRLCK : F_RDLCK;
		out.l_whence = SEEK_SET;
		out.l_start = (off_t)held.start;
		out.l_len = held.end == META_LOCK_EOF ? 0 : (off_t)(held.end - held.start + 1);
		out.l_pid = (pid_t)held.pid;
	}
	fuse_reply_lock(req, &out);
}

static void op_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *ffi, struct flock *fl,
                     int sleep)
{
	struct fusefs *fs = fs_of(req);
	struct fusefs_file *f = (struct fusefs_file *)(uintptr_t)ffi->fh;
	struct meta_lock l;
	int rc = lock_from_flock(fl, ffi->lock_owner, &l);
	/* Record first, so a close racing with the grant still drops it. */
	if (rc == 0 && l.type != META_LOCK_UN)
		rc = lock_note(fs, f, l.owner);
	if (rc == 0)
		rc = lock_set_wait(req, fs, ino, &l, sleep);
	if (rc == 0 && l.type != META_LOCK_UN)
		lock_granted(fs, ino, f);
	fuse_reply_err(req, to_errno(rc));
}

static void op_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *ffi, int op)
{
	struct fusefs *fs = fs_of(req);
	struct fusefs_file *f = (struct fusefs_file *)(uintptr_t)ffi->fh;
	struct meta_lock l = {.owner = ffi->lock_owner,
	                      .pid = (uint32_t)fuse_req_ctx(req)->pid,
	                      .kind = META_LOCK_FLOCK,
	                      .start = 0,
	                      .end = META_LOCK_EOF};
	int rc = 0;
	switch (op & ~LOCK_NB) {
	case LOCK_SH:
		l.type = META_LOCK_RD;
		break;
	case LOCK_EX:
		l.type = META_LOCK_WR;
		break;
	case LOCK_UN:
		l.type = META_LOCK_UN;
		break;
	default:
		rc = -EINVAL;
	}
	if (rc == 0 && l.type != META_LOCK_UN)
		rc = lock_note(fs, f, l.owner);
	if (rc == 0)
		rc = lock_set_wait(req, fs, ino, &l, !(op & LOCK_NB));
	if (rc == 0 && l.type != META_LOCK_UN)
		lock_granted(fs, ino, f);
	fuse_reply_err(req, to_errno(rc));
}

/* Ring registration (src/usrbio): the kernel routes the ioctl through the
 * open handle, which proves the inode and the open mode. */
static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
                     struct fuse_file_info *ffi, unsigned flags, const void *in_buf,
                     size_t in_bufsz, size_t out_bufsz)
{
	struct fusefs *fs = fs_of(req);
	int open_flags = -1; /* directories cannot be registered */
	if (!(flags & FUSE_IOCTL_DIR) && ffi && ffi->fh)
		open_flags = ((struct fusefs_file *)(uintptr_t)ffi->fh)->flags;
	if (open_flags == -1 && cmd != CFS_IOC_GET_MAGIC) {
		fuse_reply_err(req, cmd == CFS_IOC_REG ? EINVAL : ENOTTY);
		return;
	}
	usrbio_fuse_ioctl(fs->o.usrbio, req, ino, cmd, open_flags, in_buf, in_bufsz, out_bufsz);
}

static const struct fuse_lowlevel_ops fusefs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .access = op_access,
    .create = op_create,
    .getlk = op_getlk,
    .setlk = op_setlk,
    .flock = op_flock,
    .fallocate = op_fallocate,
    .ioctl = op_ioctl,
};

/* SHARED MMAP. Files are opened direct_io, and the kernel refuses
 * mmap(MAP_SHARED) of a direct_io file (ENODEV) unless the INIT reply
 * carries FUSE_DIRECT_IO_ALLOW_MMAP (protocol 7.39, kernel 6.6); then it
 * serves mappings through the page cache (page faults read with FUSE_READ,
 * dirty pages go back as FUSE_WRITE on msync, fsync, close and writeback)
 * and keeps direct I/O coherent with them. libfuse 3.14 has no flag for it
 * (3.16 has FUSE_CAP_DIRECT_IO_ALLOW_MMAP), so the session's I/O goes
 * through these two hooks: read notes the INIT request's id, writev sets
 * the bit in that one reply. Kernels that do not know the bit ignore it
 * (mmap then fails with ENODEV as before). */
#define CFS_FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36)

static ssize_t mmap_io_read(int fd, void *buf, size_t len, void *userdata)
{
	struct fusefs *fs = userdata;
	ssize_t n = read(fd, buf, len);
	if (n >= (ssize_t)sizeof(struct fuse_in_header)) {
		const struct fuse_in_header *h = buf;
		if (h->opcode == FUSE_INIT)
			atomic_store(&fs->init_unique, h->unique);
	}
	return n;
}

static ssize_t mmap_io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct fusefs *fs = userdata;
	int init = 0;
	if (count >= 2 && iov[0].iov_len == sizeof(struct fuse_out_header) &&
	    iov[1].iov_len >= offsetof(struct fuse_init_out, flags2) + sizeof(uint32_t)) {
		const struct fuse_out_header *h = iov[0].iov_base;
		uint64_t want = atomic_load(&fs->init_unique);
		if (want && h->unique == want && h->error == 0) {
			struct fuse_init_out *o = iov[1].iov_base;
			o->flags |= FUSE_INIT_EXT;
			o->flags2 |= (uint32_t)(CFS_FUSE_DIRECT_IO_ALLOW_MMAP >> 32);
			if (fs->ring && iov[1].iov_len >= sizeof(struct fuse_init_out)) {
				furing_init_reply(fs->ring, o);
				init = 1;
			}
			atomic_store(&fs->init_unique, 0);
		}
	}
	if (fs->ring && !init) {
		ssize_t n = furing_reply(fs->ring, iov, count);
		if (n != 0)
			return n;
	}
	/* Not glibc's writev: its cancellation wrapper costs two atomic
	 * read-modify-writes per reply, and the FUSE threads answer with
	 * cancellation off (fuse_loop.c: only their read of /dev/fuse is a
	 * cancellation point). A reply is never waited on for long. */
	ssize_t n = syscall(SYS_writev, fd, iov, count);
	/* the kernel set the connection up while taking the reply: the
	 * ring's entries can register now (fuse_uring.h) */
	if (init && n > 0)
		furing_start(fs->ring);
	return n;
}

/* The abort file of the FUSE connection mounted on REAL (a resolved
 * path): /sys/fs/fuse/connections/N/abort, N the minor of its device in
 * /proc/self/mountinfo (the last entry wins: a mount stacked over
 * another), into OUT; "" when not listed. Reads mountinfo only: a path
 * walk onto a mount whose daemon stopped answering would hang (the
 * abort's realpath() of the mount point once could). */
static void conn_abort_file(const char *real, char *out, size_t cap)
{
	char line[4096];
	FILE *f = fopen("/proc/self/mountinfo", "r");
	unsigned maj, min;
	out[0] = 0;
	while (f && fgets(line, sizeof(line), f)) {
		char mp[PATH_MAX], *o = mp;
		const char *q;
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mp) != 3)
			continue;
		for (q = mp; *q; q++) { /* \ooo escapes of spaces and the like */
			if (q[0] == '\\' && q[1] >= '0' && q[1] <= '7' && q[2] && q[3]) {
				*o++ = (char)(((q[1] - '0') << 6) | ((q[2] - '0') << 3) | (q[3] - '0'));
				q += 3;
			} else {
				*o++ = *q;
			}
		}
		*o = 0;
		if (!strcmp(mp, real) && strstr(line, " - fuse"))
			snprintf(out, cap, "/sys/fs/fuse/connections/%u/abort", min);
	}
	if (f)
		fclose(f);
}

/* Aborts the FUSE connection whose abort file is PATH: every request
 * nobody answered fails, and the directory locks their callers hold go. */
static void abort_connection(const char *path)
{
	if (!*path)
		return;
	int fd = open(path, O_WRONLY);
	if (fd < 0 && errno == ENOENT &&
	    mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, NULL) == 0)
		fd = open(path, O_WRONLY); /* fusectl was not mounted (containers) */
	if (fd < 0) {
		LOG_WARN("fuse", "cannot abort the connection (%s: %s)", path, strerror(errno));
		return;
	}
	if (write(fd, "1", 1) < 0)
		LOG_WARN("fuse", "aborting the connection failed: %s", strerror(errno));
	close(fd);
}

/* THE UNMOUNT GUARD. Once the session loop stops (a signal, or the kernel
 * unmounted), nobody answers requests any more, yet the directory poll's
 * notifier may sit in a notification the kernel makes wait for a
 * directory lock that an unanswered request's caller holds. That
 * wait is uninterruptible: the loop could not join the worker, the poll
 * could not be joined, and even kill -9 left the process alive (seen
 * under ASan in test_chaos_short: main thread gone, poll thread in
 * fuse_lowlevel_notify_inval_entry). So this thread, from the moment the
 * loop is told to exit, stops new notifications and, when the shutdown
 * has not got past the poll and the workers within UNMOUNT_GRACE_MS,
 * aborts the connection, which fails those requests and frees the locks. */
#define UNMOUNT_GRACE_MS 3000

static int guard_wait(struct fusefs *fs, uint64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ns = (uint64_t)ts.tv_nsec + ms * 1000000ull;
	ts.tv_sec += (time_t)(ns / 1000000000ull);
	ts.tv_nsec = (long)(ns % 1000000000ull);
	pthread_mutex_lock(&fs->guard_mu);
	if (!fs->guard_done)
		pthread_cond_timedwait(&fs->guard_cv, &fs->guard_mu, &ts);
	int done = fs->guard_done;
	pthread_mutex_unlock(&fs->guard_mu);
	return done;
}

static void *guard_main(void *arg)
{
	struct fusefs *fs = arg;
	while (!guard_wait(fs, 50))
		if (fuse_session_exited(fs->se))
			break;
	if (guard_wait(fs, 0))
		return NULL;
	dircache_quiesce(fs->dc);
	uint64_t until = clock_mono_ms() + UNMOUNT_GRACE_MS;
	while (!guard_wait(fs, 50))
		if (clock_mono_ms() >= until) {
			LOG_WARN("fuse", "unmount stuck for %d ms (a notification waits for a "
			         "request nobody answers): aborting the connection",
			         UNMOUNT_GRACE_MS);
			abort_connection(fs->conn_abort);
			atomic_store(&fs->aborted, 1);
			break;
		}
	return NULL;
}

static void guard_start(struct fusefs *fs)
{
	pthread_mutex_init(&fs->guard_mu, NULL);
	pthread_cond_init(&fs->guard_cv, NULL);
	fs->guard_started = pthread_create(&fs->guard, NULL, guard_main, fs) == 0;
	if (!fs->guard_started)
		LOG_WARN("fuse", "no unmount guard: a stuck unmount is not aborted");
}

static void guard_stop(struct fusefs *fs)
{
	if (!fs->guard_started)
		return;
	pthread_mutex_lock(&fs->guard_mu);
	fs->guard_done = 1;
	pthread_cond_broadcast(&fs->guard_cv);
	pthread_mutex_unlock(&fs->guard_mu);
	pthread_join(fs->guard, NULL);
	fs->guard_started = 0;
	pthread_mutex_destroy(&fs->guard_mu);
	pthread_cond_destroy(&fs->guard_cv);
}

int fusefs_is_mountpoint(const char *path)
{
	struct stat a, b;
	char parent[PATH_MAX];
	if (stat(path, &a) < 0)
		return -errno;
	if (snprintf(parent, sizeof(parent), "%s/..", path) >= (int)sizeof(parent))
		return -ENAMETOOLONG;
	if (stat(parent, &b) < 0)
		return -errno;
	return a.st_dev != b.st_dev || a.st_ino == b.st_ino;
}

int fusefs_run(const char *mountpoint, const struct fusefs_opts *o, char *err, size_t errlen)
{
	struct fusefs fs = {.o = *o};
	struct fuse_session *se = NULL;
	char mopts[1024];
	int rc, rc_abort = 0;

	if (!fs.o.threads)
		fs.o.threads = 64;
	if (!fs.o.readdirplus_attrs)
		fs.o.readdirplus_attrs = 1024;
	if (access("/dev/fuse", R_OK | W_OK) < 0) {
		rc = errno;
		snprintf(err, errlen,
		         "FUSE is not available: /dev/fuse: %s (load the fuse kernel module; in a "
		         "container, pass --device /dev/fuse and CAP_SYS_ADMIN)",
		         strerror(rc));
		return -ENODEV;
	}
	rc = fusefs_is_mountpoint(mountpoint);
	if (rc < 0) {
		snprintf(err, errlen, "mount point %s: %s", mountpoint, strerror(-rc));
		return -EINVAL;
	}
	if (rc == 1) {
		snprintf(err, errlen,
		         "mount point %s is busy: something is already mounted there "
		         "(fusermount3 -u %s)",
		         mountpoint, mountpoint);
		return -EBUSY;
	}
	snprintf(mopts, sizeof(mopts),
	         "fsname=chainfs,subtype=chainfs,default_permissions,max_read=%u%s%s%s",
	         FUSEFS_MAX_IO, fs.o.allow_other ? ",allow_other" : "",
	         fs.o.extra_opts && *fs.o.extra_opts ? "," : "",
	         fs.o.extra_opts ? fs.o.extra_opts : "");
	char *argv[] = {"chainfs", "-o", mopts, fs.o.debug ? "-d" : NULL, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(fs.o.debug ? 4 : 3, argv);
	pthread_mutex_init(&fs.lock, NULL);
	pthread_mutex_init(&fs.acl_lock, NULL);
	pthread_mutex_init(&fs.grp_lock, NULL);
	const char *gt = getenv("CFS_FUSE_GROUPS_TTL_MS"); /* "Caller groups" */
	unsigned long gttl = gt && *gt ? strtoul(gt, NULL, 10) : FUSEFS_GRP_TTL_MS;
	if (gttl > 60000)
		gttl = 60000;
	fs.grp_ttl_ns = (uint64_t)gttl * 1000000ull;
	fs.grp = gttl ? calloc(FUSEFS_GRP_SLOTS, sizeof(*fs.grp)) : NULL; /* NULL: off */
	const char *asd = getenv("CFS_FUSE_TEST_ACL_SET_DELAY_MS"); /* test hook */
	fs.test_acc_set_delay_ms = asd ? (unsigned)strtoul(asd, NULL, 10) : 0;
	pthread_mutex_init(&fs.dattr_lock, NULL);
	pthread_mutex_init(&fs.oa_lock, NULL);
	fs.oa = fs.o.fio ? calloc(FUSEFS_OA_SLOTS, sizeof(*fs.oa)) : NULL; /* NULL: open-ahead off */
	se = fuse_session_new(&args, &fusefs_ops, sizeof(fusefs_ops), &fs);
	fs.se = se;
	fuse_opt_free_args(&args); /* the session may have added to them */
	if (!se) {
		snprintf(err, errlen, "cannot start a FUSE session (bad -o options '%s'?)",
		         fs.o.extra_opts ? fs.o.extra_opts : "");
		pthread_mutex_destroy(&fs.lock);
		pthread_mutex_destroy(&fs.acl_lock);
		pthread_mutex_destroy(&fs.grp_lock);
		free(fs.grp);
		pthread_mutex_destroy(&fs.dattr_lock);
		pthread_mutex_destroy(&fs.oa_lock);
		free(fs.oa);
		return -EINVAL;
	}
	if (fuse_set_signal_handlers(se) != 0) {
		snprintf(err, errlen, "cannot install signal handlers");
		rc = -EIO;
		goto out;
	}
	char real[PATH_MAX];
	if (!realpath(mountpoint, real)) /* before the mount: no FUSE request */
		snprintf(real, sizeof(real), "%s", mountpoint);
	if (fuse_session_mount(se, mountpoint) != 0) {
		snprintf(err, errlen, "mounting %s failed (see the message above)", mountpoint);
		rc = -EIO;
		goto out_sig;
	}
	static const struct fuse_custom_io mmap_io = {.writev = mmap_io_writev,
	                                              .read = mmap_io_read};
	if (fs.o.fuse_uring && furing_new(fuse_session_fd(se), fs.o.threads / 2, &fs.ring) < 0)
		LOG_WARN("fuse", "fuse-uring: out of memory: serving over /dev/fuse");
	if (fuse_session_custom_io(se, &mmap_io, fuse_session_fd(se)) != 0) {
		LOG_WARN("fuse", "custom session I/O refused: shared mmap%s stays unavailable",
		         fs.ring ? " and fuse-uring" : "");
		furing_free(fs.ring);
		fs.ring = NULL;
	}
	conn_abort_file(real, fs.conn_abort, sizeof(fs.conn_abort));
	LOG_NOTICE("fuse", "mounted: mountpoint=%s threads=%d", mountpoint, fs.o.threads);
	usrbio_fuse_attach(fs.o.usrbio, se);
	if (fs.o.dircache_poll_ms) {
		double ttl = fs.o.entry_timeout > fs.o.negative_timeout ? fs.o.entry_timeout
		                                                        : fs.o.negative_timeout;
		rc = dircache_new(fs.o.meta, se, fs.o.dircache_poll_ms,
		                  (uint64_t)(ttl > 0 ? ttl * 1e9 : 0), &fs.dc);
		if (rc < 0)
			LOG_WARN("fuse", "no directory-count poll (%s): names cached at most 1 s",
			         strerror(-rc));
	}
	/* The lookup-ahead leans on the poll for names (lookahead.h). */
	if (fs.dc && fs.o.attr_timeout > 0 &&
	    lookahead_new((uint64_t)(fs.o.attr_timeout * 1e9), &fs.la) < 0)
		fs.la = NULL;
	wa_start(&fs);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	fs.closer = closer_new(fs.o.meta, FUSEFS_CLOSE_WINDOW_MS);
	guard_start(&fs);
	pc_start(&fs);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	/* Our loop, not fuse_session_loop_mt: one reader at a time, so the
	 * thread that answered a request from the caches reads the next
	 * (fuse_loop.h). */
	/* With the in-process meta the namespace changes are served by the
	 * reading thread while the host's CPUs are not contended
	 * (FUSELOOP_NS_AUTO, the default: 1.05-1.15x the creates/s and
	 * deletes/s of the hand-over in 4 of 4 quiet pairs, bench/history.md
	 * "Adaptive fast namespace opcodes: the default"). Always serving them
	 * there (CFS_FUSE_NS_FAST=1) cut the mount's CPU and context switches
	 * but lost wall time on a loaded host: the reading thread, preempted
	 * after its reply, waited for a CPU where a reader asleep in read(2)
	 * was woken at once ("Fast namespace opcodes"; CREATE alone lost the
	 * same way: "Creates on the reading thread"). CFS_FUSE_NS_FAST=0: always
	 * hand over (the previous default). */
	const char *nsf = getenv("CFS_FUSE_NS_FAST");
	unsigned nsflags = 0;
	if (meta_client_has_local(fs.o.meta)) {
		if (nsf && !strcmp(nsf, "1"))
			nsflags = FUSELOOP_NS_FAST;
		else if (!nsf || strcmp(nsf, "0"))
			nsflags = FUSELOOP_NS_AUTO;
	}
	LOG_NOTICE("fuse", "namespace changes on the reading thread: %s",
	           nsflags == FUSELOOP_NS_FAST   ? "always (CFS_FUSE_NS_FAST=1)"
	           : nsflags == FUSELOOP_NS_AUTO ? "while the CPUs are not contended"
	                                         : "never");
	rc = fuseloop_run(se, fs.o.threads, fs.ring, nsflags);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (rc < 0)
		snprintf(err, errlen, "session loop failed: %s", strerror(-rc));
	LOG_NOTICE("fuse", "unmounting: mountpoint=%s", mountpoint);
	/* The notifier may wait in a notification for a directory whose
	 * lock a request the stopped loop will never answer holds: then only
	 * aborting the connection frees both. */
	if (dircache_stop(fs.dc, 2000) == -ETIMEDOUT) {
		LOG_WARN("fuse", "directory-count poll stuck at unmount: aborting the connection");
		abort_connection(fs.conn_abort);
		rc_abort = 1;
	}
	if (pc_stop(&fs, 2000) == -ETIMEDOUT && !rc_abort) {
		LOG_WARN("fuse", "page-cache sweeper stuck at unmount: aborting the connection");
		abort_connection(fs.conn_abort);
		rc_abort = 1;
	}
	pc_join(&fs);
	guard_stop(&fs); /* before the free: the guard reads fs.dc */
	wa_stop(&fs); /* before the dircache: its fetches use it */
	dircache_free(fs.dc);
	fs.dc = NULL;
	lookahead_free(fs.la);
	fs.la = NULL;
	fuse_session_unmount(se);
	/* libfuse skips the unmount of an aborted connection: detach it here,
	 * or the mount point stays "Transport endpoint is not connected". */
	if ((atomic_load(&fs.aborted) || rc_abort) && umount2(real, MNT_DETACH) < 0 &&
	    errno != EINVAL && errno != ENOENT)
		LOG_WARN("fuse", "unmount of the aborted %s: %s (fusermount3 -uz %s)", real,
		         strerror(errno), real);
out_sig:
	fuse_remove_signal_handlers(se);
out:
	/* Reads still in flight reply through this session and their
	 * handles: let them finish first. */
	file_io_wait_reads(fs.o.fio);
	/* Handles the kernel never released (a lazy unmount with files still
	 * open): close their sessions so lengths land, and free them. */
	while (fs.files) {
		struct meta_cred cr = {0, 0, 0, NULL};
		file_drop(&fs, fs.files, &cr);
	}
	closer_free(fs.closer); /* sends the closes still queued */
	fs.closer = NULL;
	while (fs.dirs) {
		struct fusefs_dir *d = fs.dirs;
		dir_unlink(&fs, d);
		dir_free(d);
	}
	if (fs.ring)
		LOG_NOTICE("fuse", "fuse-uring: %llu requests served over the ring",
		           (unsigned long long)furing_served(fs.ring));
	furing_free(fs.ring); /* after the replies in flight (above) */
	fs.ring = NULL;
	fuse_session_destroy(se);
	pthread_mutex_destroy(&fs.lock);
	pthread_mutex_destroy(&fs.acl_lock);
	pthread_mutex_destroy(&fs.grp_lock);
	free(fs.grp);
	pthread_mutex_destroy(&fs.dattr_lock);
	pthread_mutex_destroy(&fs.oa_lock);
	free(fs.oa);
	return rc;
}
