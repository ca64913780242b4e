/* usrbio.c - the ring server (see usrbio.h for the model).
 *
 * OBJECTS (all under u->lock while linked; refcounted with atomics):
 *   ub_proc  a client process: tgid + pidfd (death detection)
 *   ub_iov   a mapped /dev/shm file, or the application's sealed memfd
 *            (/proc/PID/fd/N), registered by a symlink; a ring is an
 *            ub_iov with ->ring set (its SQ/CQ live in the mapping)
 *   ub_reg   a file registered by ioctl: inode, allowed directions, a
 *            file_io reference (open-file state: layout, size)
 * Each list holds one reference; each in-flight I/O holds one on its iov,
 * its registration and its ring. The last unref unmaps (iov) or reports
 * the written length and drops the file_io reference (reg).
 *
 * RING STATE the daemon trusts is private: entries, direction, io_depth,
 * timeout and flags come from the registration (name + file size, checked
 * against the header once), and sq_head / cq_head are kept here and only
 * written to shared memory. r->inflight (entries taken, not yet
 * completed) and cq_head are guarded by r->cq_lock; sq_head and
 * pending_since are the watcher's alone.
 *
 * ZERO COPY. A sealed memfd iov is also added to the storage client
 * (storage_client_mem_add): reads into it and writes from it then go
 * between the storage services and the application's pages over shared
 * memory, with the one copy at the service and none here. The last unref
 * removes it there (storage_client_mem_del: SHM_UNREG to each service)
 * before unmapping: no I/O holds the iov then, and the storage client's
 * table is keyed by this mapping's address, which a later mmap may
 * reuse. CFS_USRBIO_NO_ZC=1 keeps such iovs on the copy path.
 *
 * THREADS. One watcher (takes entries, reaps dead processes), N workers
 * (run batches, post completions), and the FUSE threads calling the
 * registration functions.
 */
#include "usrbio/usrbio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/log.h"
#include "common/sched_hint.h"
#include "common/status.h"
#include "meta/layout.h"
#include "usrbio/ring_abi.h"
#include "usrbio/ring_decode.h"
#include "usrbio/shm_guard.h"

#define UB_READ_BATCH_IOS   64        /* a read batch's I/Os at most */
#define UB_REAP_MS          50        /* dead-process check period */
#define UB_IDLE_MS          1000      /* watcher sleep with no process registered */

struct ub_ring;

struct ub_proc {
	struct ub_proc *next;
	pid_t tgid;
	int pidfd;
};

struct ub_iov {
	struct ub_iov *next;
	_Atomic int refs;
	uint8_t id[16];
	char name[NAME_MAX + 1];
	char target[128];
	uint64_t vino;
	uint32_t uid;
	pid_t owner;
	void *base;
	size_t size;
	int guard;
	dev_t dev;            /* the registered file, to unlink it only if unchanged */
	ino_t ino;
	int unlink_on_free;   /* the owner died: remove its /dev/shm name too */
	int memfd;            /* the target is /proc/PID/fd/N: no name to remove */
	struct storage_client *zc; /* the memory was added to it (storage_client_mem_add) */
	struct ub_ring *ring; /* non-NULL: this mapping is a ring */
};

struct ub_ring {
	struct ub_iov *mem;   /* back pointer (the iov owns the ring) */
	struct cfs_ring_hdr *hdr;
	struct cfs_ring_sqe *sq;
	struct cfs_ring_cqe *cq;
	uint32_t entries;
	int for_read;
	int io_depth;
	uint32_t timeout_ms;
	uint64_t flags;
	uint32_t sq_head;         /* watcher only */
	uint64_t pending_since;   /* watcher only: ns when a short batch was first seen */
	pthread_mutex_t cq_lock;  /* guards cq_head, inflight */
	uint32_t cq_head;
	uint32_t inflight;
};

struct ub_reg {
	struct ub_reg *next;
	_Atomic int refs;
	uint32_t id;
	pid_t owner;
	uint64_t ino;
	uint32_t mode;
	file_io_inode *fi;
	uint32_t perm[META_MAX_STRIPE];
};

struct ub_io {
	struct ub_reg *reg;
	struct ub_iov *iov;
	char *ptr;
	uint64_t off, len, userdata;
	uint32_t index;
	int64_t result;
	uint32_t crc; /* reads: CRC32C of the RESULT bytes, when crc_ok; */
	int crc_ok;   /* writes: the application's CRC32C of the bytes (CFS_OP_F_CRC) */
};

struct ub_batch {
	struct ub_batch *next;
	struct ub_iov *ring;  /* holds a reference */
	int write;
	int n;
	struct ub_io io[];
};

struct usrbio {
	struct usrbio_opts o;
	pthread_mutex_t lock;      /* the lists, next ids */
	struct ub_proc *procs;
	struct ub_iov *iovs;       /* iovs and rings */
	struct ub_reg *regs;
	uint32_t next_reg;
	uint64_t next_vino;
	sem_t *submit;
	char sem_name[64];         /* "/chainfs-submit-PID" */
	char sem_path[96];         /* "/dev/shm/sem.chainfs-submit-PID" */
	pthread_t watcher;
	int watcher_started;
	pthread_t *workers;
	int nworkers;
	pthread_mutex_t qlock;     /* the batch queue, stop */
	pthread_cond_t qcond;
	struct ub_batch *qhead, *qtail;
	int stop;
	int no_zc;                 /* CFS_USRBIO_NO_ZC=1: memfd iovs stay on the copy path */
	void (*notify)(void *, uint64_t);
	void *notify_arg;
	_Atomic uint64_t st_ios, st_bytes, st_errors, st_batches;
};

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* A storage / meta status as the errno an application should see. */
static int64_t app_errno(int rc)
{
	int e = rc < 0 ? -rc : rc;
	if (e < CFS_EBASE)
		return -e;
	if (e == CFS_ETIMEDOUT)
		return -ETIMEDOUT;
	if (e == CFS_ETOOLARGE)
		return -EFBIG;
	/* Stored data failed its CRC on every replica: -EBADMSG, as Linux
	 * filesystems report a checksum failure (EFSBADCRC), so a caller can
	 * tell it from an I/O error (KVCache gets count it a miss). */
	if (e == CFS_ECORRUPT)
		return -EBADMSG;
	return -EIO;
}

/* ---- refcounts ---- */

static void iov_unref(struct ub_iov *v)
{
	if (!v || atomic_fetch_sub(&v->refs, 1) != 1)
		return;
	if (v->zc)
		storage_client_mem_del(v->zc, v->base);
	if (v->unlink_on_free && !v->memfd) {
		/* The name would keep the memory alive forever. Only the file
		 * that was registered: a new file under the same name (another
		 * owner's) is left alone. */
		struct stat st;
		if (lstat(v->target, &st) == 0 && st.st_dev == v->dev && st.st_ino == v->ino)
			unlink(v->target);
	}
	shm_guard_remove(v->guard);
	if (v->base)
		munmap(v->base, v->size);
	if (v->ring) {
		pthread_mutex_destroy(&v->ring->cq_lock);
		free(v->ring);
	}
	free(v);
}

static void reg_unref(struct usrbio *u, struct ub_reg *g)
{
	if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
		return;
	/* Make what the rings wrote visible to every client now. */
	struct meta_length len;
	if (file_io_length(g->fi, &len)) {
		struct meta_cred cr = {0, 0, 0, NULL};
		int rc = meta_client_sync(u->o.meta, &cr, g->ino, &len, 0, NULL);
		if (rc < 0)
			LOG_INFO("usrbio", "length report failed: ino=%llu: %s",
			         (unsigned long long)g->ino, cfs_strerror(rc));
	}
	file_io_release(u->o.fio, g->fi);
	free(g);
}

/* ---- processes ---- */

static pid_t tgid_of(pid_t tid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	pid_t tg = -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "Tgid:", 5) == 0) {
			tg = (pid_t)atoi(line + 5);
			break;
		}
	fclose(f);
	return tg;
}

/* The caller's process, registered for death detection. Caller holds
 * u->lock. Returns the tgid or -errno. */
static pid_t proc_get(struct usrbio *u, const struct usrbio_caller *c)
{
	pid_t tg = tgid_of(c->tid);
	if (tg <= 0)
		return -ESRCH;
	for (struct ub_proc *p = u->procs; p; p = p->next)
		if (p->tgid == tg)
			return tg;
	struct ub_proc *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	/* The caller is blocked in this request, so the tgid is its own. */
	p->pidfd = (int)syscall(SYS_pidfd_open, tg, 0);
	if (p->pidfd < 0) {
		int e = errno;
		free(p);
		return -e;
	}
	fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
	p->tgid = tg;
	p->next = u->procs;
	u->procs = p;
	return tg;
}

/* Unlinks every object of TGID into the returned lists (caller holds
 * u->lock; unref them after unlocking). */
static void proc_drop_locked(struct usrbio *u, pid_t tg, struct ub_iov **iovs,
                             struct ub_reg **regs)
{
	for (struct ub_iov **pp = &u->iovs; *pp;) {
		struct ub_iov *v = *pp;
		if (v->owner == tg) {
			*pp = v->next;
			v->next = *iovs;
			v->unlink_on_free = 1;
			*iovs = v;
		} else {
			pp = &v->next;
		}
	}
	for (struct ub_reg **pp = &u->regs; *pp;) {
		struct ub_reg *g = *pp;
		if (g->owner == tg) {
			*pp = g->next;
			g->next = *regs;
			*regs = g;
		} else {
			pp = &g->next;
		}
	}
}

static void drop_lists(struct usrbio *u, struct ub_iov *iovs, struct ub_reg *regs)
{
	while (iovs) {
		struct ub_iov *n = iovs->next;
		iov_unref(iovs);
		iovs = n;
	}
	while (regs) {
		struct ub_reg *n = regs->next;
		reg_unref(u, regs);
		regs = n;
	}
}

/* Drops everything of processes that died. */
static void reap_dead(struct usrbio *u)
{
	struct ub_iov *iovs = NULL;
	struct ub_reg *regs = NULL;
	pthread_mutex_lock(&u->lock);
	for (struct ub_proc **pp = &u->procs; *pp;) {
		struct ub_proc *p = *pp;
		struct pollfd pf = {.fd = p->pidfd, .events = POLLIN};
		if (poll(&pf, 1, 0) == 1) {
			LOG_INFO("usrbio", "process exited: pid=%d: releasing its rings", (int)p->tgid);
			proc_drop_locked(u, p->tgid, &iovs, &regs);
			*pp = p->next;
			close(p->pidfd);
			free(p);
		} else {
			pp = &p->next;
		}
	}
	pthread_mutex_unlock(&u->lock);
	drop_lists(u, iovs, regs);
}

/* ---- registration ---- */

/* "/proc/PID/fd/N" (digits only): 1 with *PID and *FD set. */
static int target_memfd(const char *t, pid_t *pid, int *fd)
{
	unsigned long p = 0, f = 0;
	const char *q = t;
	if (strncmp(q, "/proc/", 6) != 0)
		return 0;
	q += 6;
	if (*q < '1' || *q > '9')
		return 0;
	for (; *q >= '0' && *q <= '9' && p <= INT_MAX; q++)
		p = p * 10 + (unsigned long)(*q - '0');
	if (strncmp(q, "/fd/", 4) != 0)
		return 0;
	q += 4;
	if (*q < '0' || *q > '9' || (*q == '0' && q[1]))
		return 0;
	for (; *q >= '0' && *q <= '9' && f <= INT_MAX; q++)
		f = f * 10 + (unsigned long)(*q - '0');
	if (*q || p > INT_MAX || f > INT_MAX)
		return 0;
	*pid = (pid_t)p;
	*fd = (int)f;
	return 1;
}

static int target_ok(const char *t)
{
	if (strncmp(t, "/dev/shm/", 9) != 0)
		return 0;
	const char *n = t + 9;
	if (!*n || strlen(n) > 100 || !strcmp(n, ".") || !strcmp(n, ".."))
		return 0;
	for (; *n; n++)
		if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') ||
		      (*n >= '0' && *n <= '9') || *n == '-' || *n == '_' || *n == '.'))
			return 0;
	return 1;
}

int usrbio_register(struct usrbio *u, const struct usrbio_caller *c, const char *name,
                    const char *target, uint64_t *vino)
{
	struct usrbio_name nm;
	pid_t mpid;
	int mfd;
	int memfd = strlen(target) < sizeof(((struct ub_iov *)0)->target) &&
		    target_memfd(target, &mpid, &mfd);
	if (strlen(name) > NAME_MAX || usrbio_parse_name(name, &nm) ||
	    !(memfd ? !nm.is_ring : target_ok(target)))
		return -EINVAL;
	/* A memfd is named by the caller's own descriptor table: only its
	 * own (the kernel's tid of the request gives the process). Opening
	 * the /proc link reopens the memfd itself. */
	if (memfd && tgid_of(c->tid) != mpid)
		return -EACCES;
	int fd = open(target, O_RDWR | O_CLOEXEC | O_NOCTTY | (memfd ? 0 : O_NOFOLLOW));
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	struct ub_iov *v = NULL;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0) {
		rc = -EINVAL;
		goto fail;
	}
	if (c->uid != 0 && st.st_uid != c->uid) {
		rc = -EACCES; /* only your own memory */
		goto fail;
	}
	if (nm.block_size > (uint64_t)st.st_size) {
		rc = -EINVAL;
		goto fail;
	}
	/* Only a memfd sealed against shrinking: the storage services map it
	 * too, and nothing may vanish under their copies. */
	int seals = memfd ? fcntl(fd, F_GET_SEALS) : 0;
	if (memfd && (seals < 0 || !(seals & F_SEAL_SHRINK))) {
		rc = -EINVAL;
		goto fail;
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		rc = -ENOMEM;
		goto fail;
	}
	v->guard = -1;
	v->memfd = memfd;
	atomic_init(&v->refs, 1);
	v->size = (size_t)st.st_size;
	v->uid = c->uid;
	v->dev = st.st_dev;
	v->ino = st.st_ino;
	memcpy(v->id, nm.id, 16);
	snprintf(v->name, sizeof(v->name), "%s", name);
	snprintf(v->target, sizeof(v->target), "%s", target);
	/* Populated now, as 3FS's RDMA registration pins every page: the data
	 * path then never takes a page fault on the application's memory. */
	v->base = mmap(NULL, v->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (v->base == MAP_FAILED) {
		v->base = NULL;
		rc = -errno;
		goto fail;
	}
	if (memfd && !u->no_zc) {
		int e = storage_client_mem_add(u->o.sc, fd, v->base, v->size);
		if (!e)
			v->zc = u->o.sc;
		else /* the copy path serves it */
			LOG_INFO("usrbio", "iov not zero-copy: name=%s reason=%s", name,
				 cfs_strerror(e));
	}
	close(fd);
	fd = -1;
	v->guard = shm_guard_add(v->base, v->size);
	if (v->guard < 0) {
		rc = -ENOSPC;
		goto fail;
	}
	if (nm.is_ring) {
		struct cfs_ring_hdr *h = v->base;
		uint32_t e = h->entries;
		if (v->size < CFS_RING_HDR_BYTES || h->magic != CFS_RING_MAGIC ||
		    h->version != CFS_RING_VERSION || e == 0 || e > CFS_RING_MAX_ENTRIES ||
		    cfs_ring_bytes(e) != v->size || (h->for_read != 0) != (nm.for_read != 0) ||
		    h->io_depth != nm.io_depth || (nm.io_depth > 0 && (uint32_t)nm.io_depth > e) ||
		    (nm.io_depth < 0 && (uint32_t)-nm.io_depth > e) ||
		    (nm.flags & ~(CFS_RING_FLAG_ALLOW_READ_UNCOMMITTED |
		                  CFS_RING_FLAG_FORBID_READ_HOLES | CFS_RING_FLAG_NOFLUSH)) ||
		    shm_guard_poisoned(v->guard)) {
			rc = -EINVAL;
			goto fail;
		}
		struct ub_ring *r = calloc(1, sizeof(*r));
		if (!r) {
			rc = -ENOMEM;
			goto fail;
		}
		pthread_mutex_init(&r->cq_lock, NULL);
		r->mem = v;
		r->hdr = h;
		r->sq = cfs_ring_sqes(v->base);
		r->cq = cfs_ring_cqes(v->base, e);
		r->entries = e;
		r->for_read = nm.for_read;
		r->io_depth = nm.io_depth;
		r->timeout_ms = nm.timeout_ms;
		r->flags = nm.flags;
		r->sq_head = atomic_load(&h->sq_tail); /* start where the app is */
		atomic_store(&h->sq_head, r->sq_head);
		r->cq_head = 0;
		atomic_store(&h->cq_head, 0);
		atomic_store(&h->cq_tail, 0);
		v->ring = r;
	}
	pthread_mutex_lock(&u->lock);
	pid_t tg = proc_get(u, c);
	if (tg < 0) {
		pthread_mutex_unlock(&u->lock);
		rc = tg;
		goto fail;
	}
	for (struct ub_iov *x = u->iovs; x; x = x->next)
		if (!memcmp(x->id, v->id, 16)) {
			pthread_mutex_unlock(&u->lock);
			rc = -EEXIST;
			goto fail;
		}
	v->owner = tg;
	v->vino = USRBIO_INO_LINK0 + ++u->next_vino;
	v->next = u->iovs;
	u->iovs = v;
	*vino = v->vino;
	if (v->ring) {
		v->ring->hdr->daemon_pid = (int32_t)getpid();
		v->ring->hdr->daemon_features = CFS_RING_FEAT_WRITE_CRC;
		atomic_thread_fence(memory_order_release);
		v->ring->hdr->daemon_state = CFS_RING_SERVING;
	}
	pthread_mutex_unlock(&u->lock);
	LOG_INFO("usrbio", "registered %s: name=%s pid=%d uid=%u size=%zu zero_copy=%d",
	         v->ring ? "ring" : "iov", name, (int)tg, c->uid, v->size, v->zc != NULL);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	iov_unref(v);
	return rc;
}

int usrbio_unregister(struct usrbio *u, const struct usrbio_caller *c, const char *name)
{
	pthread_mutex_lock(&u->lock);
	for (struct ub_iov **pp = &u->iovs; *pp; pp = &(*pp)->next) {
		struct ub_iov *v = *pp;
		if (strcmp(v->name, name) != 0)
			continue;
		if (c->uid != 0 && c->uid != v->uid) {
			pthread_mutex_unlock(&u->lock);
			return -EPERM;
		}
		*pp = v->next;
		pthread_mutex_unlock(&u->lock);
		iov_unref(v);
		return 0;
	}
	pthread_mutex_unlock(&u->lock);
	return -ENOENT;
}

int usrbio_lookup(struct usrbio *u, const char *name, uint64_t *vino, uint32_t *uid)
{
	if (!strcmp(name, CFS_SUBMIT_LINK)) {
		*vino = USRBIO_INO_SUBMIT;
		*uid = 0;
		return 0;
	}
	int rc = -ENOENT;
	pthread_mutex_lock(&u->lock);
	for (struct ub_iov *v = u->iovs; v; v = v->next)
		if (!strcmp(v->name, name)) {
			*vino = v->vino;
			*uid = v->uid;
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&u->lock);
	return rc;
}

int usrbio_readlink(struct usrbio *u, uint64_t vino, char *buf, size_t cap, uint32_t *uid)
{
	if (vino == USRBIO_INO_SUBMIT) {
		snprintf(buf, cap, "%s", u->sem_path);
		*uid = 0;
		return 0;
	}
	int rc = -ENOENT;
	pthread_mutex_lock(&u->lock);
	for (struct ub_iov *v = u->iovs; v; v = v->next)
		if (v->vino == vino) {
			snprintf(buf, cap, "%s", v->target);
			*uid = v->uid;
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&u->lock);
	return rc;
}

int usrbio_reg_fd(struct usrbio *u, const struct usrbio_caller *c, uint64_t ino, int open_flags,
                  uint32_t *reg, uint32_t *mode)
{
	uint32_t m = 0;
	int acc = open_flags & O_ACCMODE;
	if (acc == O_RDONLY || acc == O_RDWR)
		m |= 1;
	if (acc == O_WRONLY || acc == O_RDWR)
		m |= 2;
	if (!m)
		return -EBADF;
	/* The kernel checked permissions at open; check again with the
	 * caller's ids, as they are now, for the directions granted. */
	struct meta_cred cr = {c->uid, c->gid, c->ngroups, c->groups};
	int rc = meta_client_access(u->o.meta, &cr, ino,
	                            ((m & 1) ? R_OK : 0) | ((m & 2) ? W_OK : 0));
	if (rc < 0)
		return rc == -ENOENT ? -EBADF : -EACCES;
	file_io_inode *fi = file_io_find(u->o.fio, ino);
	if (!fi) {
		struct meta_inode *in = malloc(sizeof(*in));
		if (!in)
			return -ENOMEM;
		struct meta_cred root = {0, 0, 0, NULL};
		rc = meta_client_getattr(u->o.meta, &root, ino, in);
		if (rc == 0)
			rc = file_io_open(u->o.fio, in, &fi);
		free(in);
		if (rc < 0)
			return (int)app_errno(rc);
	}
	/* Rings address chunks directly: an inline file (file_io.h) moves
	 * to chunks once, here, and stays there. */
	rc = file_io_idata_convert(u->o.fio, fi);
	if (rc < 0) {
		file_io_release(u->o.fio, fi);
		return (int)app_errno(rc);
	}
	struct ub_reg *g = calloc(1, sizeof(*g));
	if (!g) {
		file_io_release(u->o.fio, fi);
		return -ENOMEM;
	}
	atomic_init(&g->refs, 1);
	g->ino = ino;
	g->mode = m;
	g->fi = fi;
	const struct meta_layout *l = file_io_layout(fi);
	meta_layout_perm(l->seed, l->stripe, g->perm);
	pthread_mutex_lock(&u->lock);
	pid_t tg = proc_get(u, c);
	if (tg < 0) {
		pthread_mutex_unlock(&u->lock);
		file_io_release(u->o.fio, fi);
		free(g);
		return tg;
	}
	g->owner = tg;
	g->id = ++u->next_reg;
	if (!g->id)
		g->id = ++u->next_reg;
	g->next = u->regs;
	u->regs = g;
	pthread_mutex_unlock(&u->lock);
	*reg = g->id;
	*mode = m;
	return 0;
}

int usrbio_dereg_fd(struct usrbio *u, const struct usrbio_caller *c, uint32_t reg)
{
	pthread_mutex_lock(&u->lock);
	pid_t tg = tgid_of(c->tid);
	for (struct ub_reg **pp = &u->regs; *pp; pp = &(*pp)->next) {
		struct ub_reg *g = *pp;
		if (g->id == reg && g->owner == tg) {
			*pp = g->next;
			pthread_mutex_unlock(&u->lock);
			reg_unref(u, g);
			return 0;
		}
	}
	pthread_mutex_unlock(&u->lock);
	return -ENOENT;
}

/* ---- completions ---- */

static void post(struct ub_ring *r, const struct ub_io *io, int n)
{
	int poisoned = shm_guard_poisoned(r->mem->guard);
	pthread_mutex_lock(&r->cq_lock);
	for (int i = 0; i < n; i++) {
		if (!poisoned) {
			struct cfs_ring_cqe *c = &r->cq[r->cq_head % r->entries];
			c->result = io[i].result;
			c->userdata = io[i].userdata;
			c->index = io[i].index;
			/* Reads only: a write's crc is the application's own. */
			int crc = r->for_read && io[i].crc_ok;
			c->reserved = crc ? io[i].crc : 0;
			c->reserved2 = crc ? CFS_RING_CQE_F_CRC : 0;
		}
		r->cq_head++;
		r->inflight--;
	}
	if (!poisoned)
		atomic_store_explicit(&r->hdr->cq_head, r->cq_head, memory_order_release);
	pthread_mutex_unlock(&r->cq_lock);
	if (!poisoned)
		sem_post(&r->hdr->cq_sem);
}

static void batch_free(struct usrbio *u, struct ub_batch *b)
{
	for (int i = 0; i < b->n; i++) {
		iov_unref(b->io[i].iov);
		reg_unref(u, b->io[i].reg);
	}
	iov_unref(b->ring);
	free(b);
}

/* ---- the data path ---- */

static void run_write(struct usrbio *u, struct ub_batch *b, uint64_t flags)
{
	uint32_t wf = (flags & CFS_RING_FLAG_NOFLUSH) ? FILE_IO_WF_NOFLUSH : 0;
	for (int i = 0; i < b->n; i++) {
		struct ub_io *io = &b->io[i];
		if (shm_guard_poisoned(io->iov->guard)) {
			io->result = -EFAULT;
			continue;
		}
		uint64_t before = file_io_size(io->reg->fi);
		/* With the application's CRC the storage client makes no pass
		 * over the shared buffer; the head checks its copy against it. */
		ssize_t n = io->crc_ok
		                ? file_io_write_crc_flags(u->o.fio, io->reg->fi, io->off, io->len,
		                                          io->ptr, io->crc, wf)
		                : file_io_write(u->o.fio, io->reg->fi, io->off, io->len, io->ptr);
		if (shm_guard_poisoned(io->iov->guard))
			n = -EFAULT;
		io->result = n < 0 ? app_errno((int)n) : n;
		if (n > 0 && io->off + io->len > before && u->notify)
			u->notify(u->notify_arg, io->reg->ino);
	}
}

/* Refreshes FI's size from meta when [OFF, OFF+LEN) goes past what this
 * mount knows (another client may have written more). */
static uint64_t size_for(struct usrbio *u, struct ub_reg *g, uint64_t off, uint64_t len)
{
	uint64_t size = file_io_size(g->fi);
	if (off + len <= size)
		return size;
	struct meta_inode *in = malloc(sizeof(*in));
	struct meta_cred cr = {0, 0, 0, NULL};
	if (in && meta_client_getattr(u->o.meta, &cr, g->ino, in) == 0)
		file_io_update(g->fi, in);
	free(in);
	return file_io_size(g->fi);
}

/* The end of the read piece starting at POS: the next read_piece or
 * chunk boundary, at most END. Pieces of one chunk go to different
 * replicas (the storage client rotates), so one reader keeps all busy. */
static uint64_t piece_end(const struct usrbio *u, uint64_t cs, uint64_t pos, uint64_t end)
{
	uint64_t ce = (pos / cs + 1) * cs;
	uint64_t rp = u->o.read_piece;
	uint64_t pe = pos - pos % cs + ((pos % cs) / rp + 1) * rp;
	if (pe < ce)
		ce = pe;
	return ce < end ? ce : end;
}

static void run_read(struct usrbio *u, struct ub_batch *b, uint64_t flags)
{
	size_t np = 0;
	uint64_t *todo = calloc((size_t)b->n, sizeof(*todo)); /* bytes to read per I/O */
	if (!todo) {
		for (int i = 0; i < b->n; i++)
			b->io[i].result = -ENOMEM;
		return;
	}
	for (int i = 0; i < b->n; i++) {
		struct ub_io *io = &b->io[i];
		if (shm_guard_poisoned(io->iov->guard)) {
			io->result = -EFAULT;
			continue;
		}
		uint64_t size = size_for(u, io->reg, io->off, io->len);
		if (io->off >= size) {
			io->result = 0;
			continue;
		}
		todo[i] = io->len < size - io->off ? io->len : size - io->off;
		uint64_t cs = file_io_layout(io->reg->fi)->chunk_size;
		if ((io->off + todo[i] - 1) / cs > UINT32_MAX) {
			io->result = -EFBIG;
			todo[i] = 0;
			continue;
		}
		for (uint64_t pos = io->off; pos < io->off + todo[i]; np++)
			pos = piece_end(u, cs, pos, io->off + todo[i]);
		io->result = (int64_t)todo[i];
	}
	struct storage_read *r = np ? calloc(np, sizeof(*r)) : NULL;
	int *owner = np ? calloc(np, sizeof(*owner)) : NULL;
	if (np && (!r || !owner)) {
		for (int i = 0; i < b->n; i++)
			if (todo[i])
				b->io[i].result = -ENOMEM;
		np = 0;
	}
	size_t k = 0;
	for (int i = 0; i < b->n && np; i++) {
		struct ub_io *io = &b->io[i];
		if (!todo[i])
			continue;
		const struct meta_layout *l = file_io_layout(io->reg->fi);
		uint64_t cs = l->chunk_size, pos = io->off, end = io->off + todo[i];
		while (pos < end) {
			uint32_t idx = (uint32_t)(pos / cs);
			uint64_t pe = piece_end(u, cs, pos, end);
			r[k] = (struct storage_read){
			    .loc = {.chain = meta_layout_chain(l, io->reg->perm, idx)},
			    .ino = io->reg->ino,
			    .idx = idx,
			    .off = (uint32_t)(pos % cs),
			    .len = (uint32_t)(pe - pos),
			    .dst = io->ptr + (pos - io->off),
			};
			owner[k++] = i;
			pos = pe;
		}
	}
	if (np) {
		int rc = storage_client_read(u->o.sc, r, np,
		                             (flags & CFS_RING_FLAG_ALLOW_READ_UNCOMMITTED)
		                                 ? STO_RF_RELAXED
		                                 : 0);
		/* Pieces of one I/O are in file order: fold their CRCs (checked
		 * against storage's by the storage client) into the I/O's. */
		for (int i = 0; i < b->n; i++)
			b->io[i].crc_ok = todo[i] != 0;
		for (size_t j = 0; j < np; j++) {
			struct ub_io *io = &b->io[owner[j]];
			if (io->result < 0)
				continue;
			int res = rc < 0 ? rc : r[j].result;
			if (res == -ENOENT)
				res = 0;
			if (res < 0) {
				io->result = app_errno(res);
				continue;
			}
			uint32_t got = (uint32_t)res > r[j].len ? r[j].len : (uint32_t)res;
			if (got < r[j].len) {
				io->crc_ok = 0;
				if (flags & CFS_RING_FLAG_FORBID_READ_HOLES)
					io->result = -ENODATA;
				else
					memset((char *)r[j].dst + got, 0, r[j].len - got);
			} else if (io->crc_ok) {
				io->crc = (char *)r[j].dst == io->ptr
					      ? r[j].crc
					      : crc32c_combine(io->crc, r[j].crc, got);
			}
		}
		for (int i = 0; i < b->n; i++)
			if (todo[i] && shm_guard_poisoned(b->io[i].iov->guard))
				b->io[i].result = -EFAULT;
	}
	free(r);
	free(owner);
	free(todo);
}

static void *worker_main(void *arg)
{
	struct usrbio *u = arg;
	/* A ring I/O is a chain of hand-offs (watcher, worker, completion):
	 * short turns, so each runs at its wake-up on a busy host instead of
	 * after the running task's slice (sched_hint.h). */
	sched_hint_latency();
	for (;;) {
		pthread_mutex_lock(&u->qlock);
		while (!u->qhead && !u->stop)
			pthread_cond_wait(&u->qcond, &u->qlock);
		struct ub_batch *b = u->qhead;
		if (!b) {
			pthread_mutex_unlock(&u->qlock);
			return NULL;
		}
		u->qhead = b->next;
		if (!u->qhead)
			u->qtail = NULL;
		pthread_mutex_unlock(&u->qlock);
		struct ub_ring *r = b->ring->ring;
		if (b->write)
			run_write(u, b, r->flags);
		else
			run_read(u, b, r->flags);
		uint64_t bytes = 0, errs = 0;
		for (int i = 0; i < b->n; i++) {
			if (b->io[i].result > 0)
				bytes += (uint64_t)b->io[i].result;
			else if (b->io[i].result < 0)
				errs++;
		}
		atomic_fetch_add(&u->st_ios, (uint64_t)b->n);
		atomic_fetch_add(&u->st_bytes, bytes);
		atomic_fetch_add(&u->st_errors, errs);
		atomic_fetch_add(&u->st_batches, 1);
		post(r, b->io, b->n);
		batch_free(u, b);
	}
}

static void queue_batch(struct usrbio *u, struct ub_batch *b)
{
	pthread_mutex_lock(&u->qlock);
	b->next = NULL;
	if (u->qtail)
		u->qtail->next = b;
	else
		u->qhead = b;
	u->qtail = b;
	pthread_cond_signal(&u->qcond);
	pthread_mutex_unlock(&u->qlock);
}

/* ---- the watcher ---- */

/* Resolves a decoded SQE of ring RV into IO (taking references). Caller
 * holds u->lock. 0 or the completion's -errno. */
static int resolve(struct usrbio *u, struct ub_iov *rv, const struct usrbio_sqe *s,
                   struct ub_io *io)
{
	struct ub_reg *g = NULL;
	for (g = u->regs; g; g = g->next)
		if (g->id == s->reg && g->owner == rv->owner)
			break;
	if (!g)
		return -EBADF;
	if (!(g->mode & (s->op == CFS_OP_READ ? 1u : 2u)))
		return -EACCES;
	const struct meta_layout *l = file_io_layout(g->fi);
	if ((s->file_off + s->len - 1) / l->chunk_size > UINT32_MAX)
		return -EFBIG;
	struct ub_iov *v;
	for (v = u->iovs; v; v = v->next)
		if (!memcmp(v->id, s->buf_id, 16))
			break;
	if (!v || v->ring || (rv->uid != 0 && v->uid != rv->uid))
		return -EFAULT;
	int rc = usrbio_check_range(v->size, s->buf_off, s->len);
	if (rc)
		return rc;
	atomic_fetch_add(&g->refs, 1);
	atomic_fetch_add(&v->refs, 1);
	io->reg = g;
	io->iov = v;
	io->ptr = (char *)v->base + s->buf_off;
	io->off = s->file_off;
	io->len = s->len;
	io->crc = s->crc;
	io->crc_ok = s->has_crc;
	return 0;
}

/* How many entries of R to take now by its io_depth rule (0: none). */
static uint32_t take_count(struct ub_ring *r, uint32_t avail, uint64_t now, uint64_t *wake_ns)
{
	if (r->io_depth > 0)
		return avail >= (uint32_t)r->io_depth ? (uint32_t)r->io_depth : 0;
	if (r->io_depth == 0)
		return avail;
	uint32_t want = (uint32_t)-r->io_depth;
	if (avail >= want) {
		r->pending_since = 0;
		return want;
	}
	if (!r->timeout_ms)
		return avail;
	if (!r->pending_since)
		r->pending_since = now;
	uint64_t due = r->pending_since + (uint64_t)r->timeout_ms * 1000000ull;
	if (now >= due) {
		r->pending_since = 0;
		return avail;
	}
	if (due < *wake_ns)
		*wake_ns = due;
	return 0;
}

/* Takes what RV's ring allows, queues batches. Returns entries taken. */
static uint32_t scan_ring(struct usrbio *u, struct ub_iov *rv, uint64_t now, uint64_t *wake_ns)
{
	struct ub_ring *r = rv->ring;
	if (shm_guard_poisoned(rv->guard))
		return 0;
	uint32_t total = 0;
	for (;;) {
		uint32_t tail = atomic_load_explicit(&r->hdr->sq_tail, memory_order_acquire);
		uint32_t avail = tail - r->sq_head;
		if (!avail) {
			r->pending_since = 0;
			return total;
		}
		if (avail > r->entries)
			return total; /* the application broke its ring: take nothing */
		uint32_t cq_tail = atomic_load_explicit(&r->hdr->cq_tail, memory_order_acquire);
		pthread_mutex_lock(&r->cq_lock);
		uint32_t unreaped = r->cq_head - cq_tail;
		uint32_t busy = unreaped > r->entries ? r->entries : unreaped + r->inflight;
		pthread_mutex_unlock(&r->cq_lock);
		uint32_t room = busy >= r->entries ? 0 : r->entries - busy;
		if (avail > room)
			avail = room;
		uint32_t take = take_count(r, avail, now, wake_ns);
		if (!take)
			return total;
		pthread_mutex_lock(&r->cq_lock);
		r->inflight += take;
		pthread_mutex_unlock(&r->cq_lock);
		/* Decode and resolve all of them; failures complete at once. */
		struct ub_io *ios = calloc(take, sizeof(*ios));
		struct ub_io *bad = calloc(take, sizeof(*bad));
		int nbad = 0, nok = 0;
		if (!ios || !bad) {
			free(ios);
			free(bad);
			pthread_mutex_lock(&r->cq_lock);
			r->inflight -= take;
			pthread_mutex_unlock(&r->cq_lock);
			return total;
		}
		pthread_mutex_lock(&u->lock);
		for (uint32_t i = 0; i < take; i++) {
			struct usrbio_sqe s;
			int rc = usrbio_decode_sqe(&r->sq[(r->sq_head + i) % r->entries], r->entries,
			                           r->for_read, &s);
			struct ub_io io = {.userdata = s.userdata, .index = s.index};
			if (!rc)
				rc = resolve(u, rv, &s, &io);
			if (rc) {
				io.result = rc;
				bad[nbad++] = io;
			} else {
				ios[nok++] = io;
			}
		}
		pthread_mutex_unlock(&u->lock);
		r->sq_head += take;
		atomic_store_explicit(&r->hdr->sq_head, r->sq_head, memory_order_release);
		total += take;
		if (nbad) {
			atomic_fetch_add(&u->st_errors, (uint64_t)nbad);
			post(r, bad, nbad);
		}
		free(bad);
		/* Reads: batches of up to UB_READ_BATCH_IOS / _BYTES, each one
		 * storage call; writes: one I/O per batch, so workers overlap them. */
		int i = 0;
		while (i < nok) {
			int n = 1;
			if (r->for_read) {
				uint64_t bytes = ios[i].len;
				while (i + n < nok && n < UB_READ_BATCH_IOS &&
				       bytes + ios[i + n].len <= u->o.batch_bytes)
					bytes += ios[i + n++].len;
			}
			struct ub_batch *b = malloc(sizeof(*b) + (size_t)n * sizeof(struct ub_io));
			if (!b) {
				for (int j = i; j < i + n; j++) {
					ios[j].result = -ENOMEM;
					post(r, &ios[j], 1);
					iov_unref(ios[j].iov);
					reg_unref(u, ios[j].reg);
				}
				i += n;
				continue;
			}
			b->write = !r->for_read;
			b->n = n;
			atomic_fetch_add(&rv->refs, 1);
			b->ring = rv;
			memcpy(b->io, ios + i, (size_t)n * sizeof(struct ub_io));
			queue_batch(u, b);
			i += n;
		}
		free(ios);
	}
}

static void *watcher_main(void *arg)
{
	struct usrbio *u = arg;
	uint64_t last_reap = 0;
	size_t cap = 0;
	struct ub_iov **snap = NULL;
	sched_hint_latency(); /* as worker_main */
	for (;;) {
		pthread_mutex_lock(&u->qlock);
		int stop = u->stop;
		pthread_mutex_unlock(&u->qlock);
		if (stop)
			break;
		uint64_t now = now_ns();
		if (now - last_reap >= UB_REAP_MS * 1000000ull) {
			reap_dead(u);
			last_reap = now;
		}
		/* Snapshot the rings with references, scan without the lock. */
		size_t n = 0;
		pthread_mutex_lock(&u->lock);
		for (struct ub_iov *v = u->iovs; v; v = v->next)
			if (v->ring)
				n++;
		if (n > cap) {
			struct ub_iov **ns = realloc(snap, n * sizeof(*ns));
			if (ns) {
				snap = ns;
				cap = n;
			}
		}
		n = 0;
		for (struct ub_iov *v = u->iovs; v && n < cap; v = v->next)
			if (v->ring) {
				atomic_fetch_add(&v->refs, 1);
				snap[n++] = v;
			}
		int have_procs = u->procs != NULL;
		pthread_mutex_unlock(&u->lock);
		/* Polling is for rings whose entries were prepared without a
		 * hint; with no ring there is nothing to poll, only processes to
		 * reap (their registered buffers), so an idle mount does not wake
		 * 500 times a second. A ring's first cfs_submit_ios posts the hint. */
		uint64_t idle_ms = u->o.poll_ms;
		if (!n)
			idle_ms = have_procs ? UB_REAP_MS : UB_IDLE_MS;
		uint64_t wake = now + idle_ms * 1000000ull;
		uint32_t took = 0;
		for (size_t i = 0; i < n; i++) {
			took += scan_ring(u, snap[i], now, &wake);
			iov_unref(snap[i]);
		}
		if (took)
			continue;
		/* Sleep on the submit hint until the next poll or deadline. */
		uint64_t d = wake > now ? wake - now : 0;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + d;
		ts.tv_sec += (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		sem_timedwait(u->submit, &ts);
		while (sem_trywait(u->submit) == 0)
			; /* one scan serves every hint posted so far */
	}
	free(snap);
	return NULL;
}

/* ---- lifecycle ---- */

/* Removes submit semaphores of mount processes that died without
 * cleaning up (kill -9). */
static void remove_stale_sems(void)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		int pid;
		char tail;
		if (sscanf(de->d_name, "sem.chainfs-submit-%d%c", &pid, &tail) != 1 || pid <= 0)
			continue;
		if (kill(pid, 0) < 0 && errno == ESRCH) {
			char name[64];
			snprintf(name, sizeof(name), "/chainfs-submit-%d", pid);
			sem_unlink(name);
		}
	}
	closedir(d);
}

int usrbio_new(const struct usrbio_opts *o, struct usrbio **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!o->meta || !o->fio || !o->sc) {
		snprintf(err, errlen, "usrbio: meta, file_io and storage client are required");
		return -EINVAL;
	}
	int rc = shm_guard_install();
	if (rc) {
		snprintf(err, errlen, "usrbio: cannot install the SIGBUS guard: %s", strerror(-rc));
		return rc;
	}
	struct usrbio *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->o = *o;
	const char *nz = getenv("CFS_USRBIO_NO_ZC");
	u->no_zc = nz && !strcmp(nz, "1");
	if (u->o.workers <= 0)
		u->o.workers = 64;
	if (!u->o.poll_ms)
		u->o.poll_ms = 2;
	if (!u->o.batch_bytes)
		u->o.batch_bytes = 2u << 20;
	if (!u->o.read_piece)
		u->o.read_piece = 256u << 10;
	pthread_mutex_init(&u->lock, NULL);
	pthread_mutex_init(&u->qlock, NULL);
	pthread_cond_init(&u->qcond, NULL);
	u->submit = SEM_FAILED;
	snprintf(u->sem_name, sizeof(u->sem_name), "/chainfs-submit-%d", (int)getpid());
	snprintf(u->sem_path, sizeof(u->sem_path), "/dev/shm/sem.chainfs-submit-%d", (int)getpid());
	sem_unlink(u->sem_name); /* a stale one of an earlier process with our pid */
	remove_stale_sems();
	u->submit = sem_open(u->sem_name, O_CREAT | O_EXCL, 0666, 0);
	if (u->submit == SEM_FAILED) {
		rc = -errno;
		snprintf(err, errlen, "usrbio: sem_open %s: %s", u->sem_name, strerror(-rc));
		usrbio_free(u);
		return rc;
	}
	chmod(u->sem_path, 0666); /* every user's rings post it (umask may have cut it) */
	u->workers = calloc((size_t)u->o.workers, sizeof(*u->workers));
	if (!u->workers) {
		usrbio_free(u);
		return -ENOMEM;
	}
	for (int i = 0; i < u->o.workers; i++) {
		rc = pthread_create(&u->workers[i], NULL, worker_main, u);
		if (rc) {
			snprintf(err, errlen, "usrbio: cannot start a worker: %s", strerror(rc));
			usrbio_free(u);
			return -rc;
		}
		u->nworkers++;
	}
	rc = pthread_create(&u->watcher, NULL, watcher_main, u);
	if (rc) {
		snprintf(err, errlen, "usrbio: cannot start the watcher: %s", strerror(rc));
		usrbio_free(u);
		return -rc;
	}
	(void)pthread_setname_np(u->watcher, "ub-watch"); /* tests find it by name */
	u->watcher_started = 1;
	*out = u;
	return 0;
}

void usrbio_free(struct usrbio *u)
{
	if (!u)
		return;
	pthread_mutex_lock(&u->qlock);
	u->stop = 1;
	pthread_cond_broadcast(&u->qcond);
	pthread_mutex_unlock(&u->qlock);
	if (u->watcher_started) {
		sem_post(u->submit);
		pthread_join(u->watcher, NULL);
	}
	/* Workers drain the queue before they stop. */
	for (int i = 0; i < u->nworkers; i++)
		pthread_join(u->workers[i], NULL);
	while (u->qhead) {
		struct ub_batch *b = u->qhead;
		u->qhead = b->next;
		for (int i = 0; i < b->n; i++)
			b->io[i].result = -ENOTCONN;
		post(b->ring->ring, b->io, b->n);
		batch_free(u, b);
	}
	struct ub_iov *iovs = u->iovs;
	struct ub_reg *regs = u->regs;
	u->iovs = NULL;
	u->regs = NULL;
	drop_lists(u, iovs, regs);
	while (u->procs) {
		struct ub_proc *p = u->procs;
		u->procs = p->next;
		close(p->pidfd);
		free(p);
	}
	if (u->submit != SEM_FAILED) {
		sem_close(u->submit);
		sem_unlink(u->sem_name);
	}
	free(u->workers);
	pthread_cond_destroy(&u->qcond);
	pthread_mutex_destroy(&u->qlock);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

void usrbio_set_notify(struct usrbio *u, void (*fn)(void *arg, uint64_t ino), void *arg)
{
	u->notify = fn;
	u->notify_arg = arg;
}

void usrbio_get_stats(struct usrbio *u, struct usrbio_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->ios = atomic_load(&u->st_ios);
	out->bytes = atomic_load(&u->st_bytes);
	out->errors = atomic_load(&u->st_errors);
	out->batches = atomic_load(&u->st_batches);
	pthread_mutex_lock(&u->lock);
	for (struct ub_iov *v = u->iovs; v; v = v->next) {
		if (v->ring)
			out->rings++;
		else
			out->iovs++;
	}
	for (struct ub_reg *g = u->regs; g; g = g->next)
		out->regs++;
	for (struct ub_proc *p = u->procs; p; p = p->next)
		out->procs++;
	pthread_mutex_unlock(&u->lock);
}
