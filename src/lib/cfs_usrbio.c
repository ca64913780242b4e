/* cfs_usrbio.c - libchainfs: the application side of the shared-memory
 * rings (include/chainfs.h; protocol in src/usrbio/ring_abi.h).
 *
 * HOW IT WORKS. An iov is a memfd sealed against shrinking and growing
 * (or, with CFS_IOV_DEVSHM=1, a /dev/shm file) mapped here and registered
 * with the daemon by a symlink in <mount>/3fs-virt/iovs named by its
 * random id, whose target is /proc/<our pid>/fd/<the memfd> (the daemon
 * reopens it there; the descriptor stays open while the iov lives). The
 * seals let the daemon hand the memfd on to same-host storage services,
 * which then copy read bytes straight into it and write bytes straight
 * out of it (docs/usrbio.md "Zero copy"): a shrink would crash them.
 * A ring is the same with a ring header, an SQ and a CQ; its /dev/shm
 * name is removed right after registration (both mappings keep the pages).
 * Slots: a bitmap (ior->lock) hands out the index cfs_prep_io returns and
 * cfs_wait_for_ios frees it, so at most `entries` I/Os are in flight and
 * neither queue can overflow. SQEs are written in place and published by
 * a release store of sq_tail; CQEs are read after an acquire load of
 * cq_head and given back by a release store of cq_tail.
 *
 * REGISTRATIONS. A process-wide table indexed by fd (reg_lock) maps both
 * the registered fd and its dup to one entry {registration id, mode, pid}.
 * The pid lets a forked child re-register lazily: registrations belong to
 * the process that made them (the daemon checks).
 *
 * DAEMON DEATH. Each ring holds a pidfd of the daemon that mapped it
 * (daemon_pid in the header). A waiter that has pending I/Os and sees no
 * completion polls it every WAIT_SLICE_MS; once it is readable the daemon
 * is gone and the ring answers -ENOTCONN.
 */
#include "chainfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/cfs_usrbio_int.h"
#include "usrbio/ring_abi.h"

#define WAIT_SLICE_MS 100
#define MP_MAX 256

struct cfs_iov {
	void *base;
	size_t size;
	size_t block_size;
	uint8_t id[16];
	char mount[MP_MAX];
	char shm[64];          /* /dev/shm name without the slash; "" once unlinked */
	int memfd;             /* the sealed memfd behind it (ours), or -1 */
	char link[PATH_MAX];   /* registration symlink; "" when not ours */
};

struct cfs_ior {
	cfs_iov *mem;                /* the ring's shared memory (owns the registration) */
	struct cfs_ring_hdr *hdr;
	struct cfs_ring_sqe *sq;
	struct cfs_ring_cqe *cq;
	uint32_t entries;
	int for_read;
	sem_t *submit;               /* the mount's submit semaphore */
	int daemon_pidfd;            /* -1 if unknown */
	_Atomic int dead;            /* the daemon is gone */
	pthread_mutex_t lock;        /* slots, inflight */
	uint64_t *slots;             /* bit set: slot in use */
	uint32_t inflight;
	uint32_t sq_tail;            /* private copy (one preparer at a time) */
	pthread_mutex_t wait_lock;   /* one reaper at a time */
	int write_crc;               /* the daemon takes CFS_OP_F_CRC (read once at create) */
};

/* ---- helpers ---- */

static void hex_id(const uint8_t id[16], char out[33])
{
	static const char h[] = "0123456789abcdef";
	for (int i = 0; i < 16; i++) {
		out[2 * i] = h[id[i] >> 4];
		out[2 * i + 1] = h[id[i] & 15];
	}
	out[32] = 0;
}

static int random_id(uint8_t id[16])
{
	size_t got = 0;
	while (got < 16) {
		ssize_t n = getrandom(id + got, 16 - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	return 0;
}

static int check_mount(const char *mount)
{
	if (!mount || !*mount || strlen(mount) >= MP_MAX)
		return -EINVAL;
	return 0;
}

/* Sizes FD to SIZE bytes, adds SEALS (0: none) and maps it shared into
 * V->base (NULL on failure); -errno. The caller keeps FD. */
static int size_and_map(int fd, size_t size, int seals, cfs_iov *v)
{
	v->base = NULL;
	if (ftruncate(fd, (off_t)size) < 0 || (seals && fcntl(fd, F_ADD_SEALS, seals) < 0))
		return -errno;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	v->base = p;
	return 0;
}

/* Creates /dev/shm/PREFIX<hex> of SIZE bytes, mapped shared. */
static int shm_make(const char *prefix, const uint8_t id[16], size_t size, cfs_iov *v)
{
	char hex[33];
	hex_id(id, hex);
	snprintf(v->shm, sizeof(v->shm), "%s%s", prefix, hex);
	char name[80];
	snprintf(name, sizeof(name), "/%s", v->shm);
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		v->shm[0] = 0;
		return -errno;
	}
	int rc = size_and_map(fd, size, 0, v);
	close(fd);
	if (rc) {
		shm_unlink(name);
		v->shm[0] = 0;
	}
	v->size = size;
	return rc;
}

static void shm_drop_name(cfs_iov *v)
{
	if (!v->shm[0])
		return;
	char name[80];
	snprintf(name, sizeof(name), "/%s", v->shm);
	shm_unlink(name);
	v->shm[0] = 0;
}

/* A sealed memfd of SIZE bytes, mapped shared; -errno when memfds or
 * seals are unavailable (the caller falls back to /dev/shm). */
static int memfd_make(size_t size, cfs_iov *v)
{
	/* Named like the /dev/shm file would be: /proc/PID/maps of every
	 * process mapping it shows "memfd:chainfs-iov-<id>". */
	char hex[33], name[64];
	hex_id(v->id, hex);
	snprintf(name, sizeof(name), "chainfs-iov-%s", hex);
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	int rc = size_and_map(fd, size, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, v);
	if (rc) {
		close(fd);
		return rc;
	}
	v->memfd = fd;
	v->size = size;
	return 0;
}

/* "/proc/N/fd/M" with N and M numbers: what cfs_iov_create links a memfd
 * iov to. */
static int proc_fd_target(const char *t)
{
	int n = 0;
	if (sscanf(t, "/proc/%*[0-9]/fd/%*[0-9]%n", &n) != 0 || n == 0 || t[n])
		return 0;
	return 1;
}

/* symlink(/dev/shm/<shm> or /proc/<pid>/fd/<memfd>,
 *         <mount>/3fs-virt/iovs/<hex><suffix>). */
static int register_link(cfs_iov *v, const char *suffix)
{
	char hex[33], target[128];
	hex_id(v->id, hex);
	if (v->memfd >= 0)
		snprintf(target, sizeof(target), "/proc/%d/fd/%d", (int)getpid(), v->memfd);
	else
		snprintf(target, sizeof(target), "/dev/shm/%s", v->shm);
	if (snprintf(v->link, sizeof(v->link), "%s/" CFS_VIRT_DIR "/" CFS_VIRT_IOVS "/%s%s",
	             v->mount, hex, suffix) >= (int)sizeof(v->link)) {
		v->link[0] = 0;
		return -ENAMETOOLONG;
	}
	if (symlink(target, v->link) < 0) {
		int e = errno;
		v->link[0] = 0;
		return -e;
	}
	return 0;
}

/* ---- mount points ---- */

/* Unescapes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *o = s;
	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*o++ = *s++;
		}
	}
	*o = 0;
}

int cfs_extract_mount_point(char *mp, int size, const char *path)
{
	char *rp = path ? realpath(path, NULL) : NULL;
	if (!rp)
		return -1;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f) {
		free(rp);
		return -1;
	}
	char line[4096], best[PATH_MAX];
	size_t bestlen = 0;
	best[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		/* id parent maj:min root mountpoint opts [optional...] - fstype src sopts */
		char *save = NULL, *tok[6];
		int n = 0;
		for (char *t = strtok_r(line, " ", &save); t && n < 5; t = strtok_r(NULL, " ", &save))
			tok[n++] = t;
		if (n < 5)
			continue;
		char *mpt = tok[4];
		char *sep = strstr(save ? save : "", " - ");
		if (!sep && save && strncmp(save, "- ", 2) == 0)
			sep = save - 1;
		if (!sep)
			continue;
		char *fstype = sep + 3;
		char *sp = strchr(fstype, ' ');
		if (sp)
			*sp = 0;
		if (strcmp(fstype, "fuse.chainfs") != 0)
			continue;
		unescape(mpt);
		size_t l = strlen(mpt);
		int under = strncmp(rp, mpt, l) == 0 &&
		            (rp[l] == 0 || rp[l] == '/' || (l == 1 && mpt[0] == '/'));
		if (under && l >= bestlen && l < sizeof(best)) {
			memcpy(best, mpt, l + 1);
			bestlen = l;
		}
	}
	fclose(f);
	free(rp);
	if (!best[0])
		return -1;
	if ((int)bestlen < size)
		memcpy(mp, best, bestlen + 1);
	return (int)bestlen + 1;
}

int cfs_is_chainfs(int fd)
{
	uint32_t magic = 0;
	if (ioctl(fd, CFS_IOC_GET_MAGIC, &magic) < 0)
		return 0;
	return magic == CFS_SUPER_MAGIC;
}

/* ---- iovs ---- */

static int iov_new(const char *mount, cfs_iov **out)
{
	int rc = check_mount(mount);
	if (rc)
		return rc;
	cfs_iov *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	snprintf(v->mount, sizeof(v->mount), "%s", mount);
	v->memfd = -1;
	*out = v;
	return 0;
}

int cfs_iov_create(const char *mount, size_t size, size_t block_size, int numa, cfs_iov **out)
{
	cfs_iov *v = NULL;
	*out = NULL;
	if (size == 0 || block_size > size)
		return -EINVAL;
	int rc = iov_new(mount, &v);
	if (rc)
		return rc;
	v->block_size = block_size;
	if ((rc = random_id(v->id)))
		goto fail;
	const char *e = getenv("CFS_IOV_DEVSHM");
	if ((e && !strcmp(e, "1")) || memfd_make(size, v)) {
		if ((rc = shm_make("chainfs-iov-", v->id, size, v)))
			goto fail;
	}
	char suffix[32] = "";
	if (block_size)
		snprintf(suffix, sizeof(suffix), ".b%zu", block_size);
	if ((rc = register_link(v, suffix)))
		goto fail;
	*out = v;
	return 0;
fail:
	cfs_iov_destroy(v);
	return rc;
}

int cfs_iov_open(const char *mount, const uint8_t id[16], size_t size, size_t block_size,
                 int numa, cfs_iov **out)
{
	cfs_iov *v = NULL;
	*out = NULL;
	if (!id || size == 0)
		return -EINVAL;
	int rc = iov_new(mount, &v);
	if (rc)
		return rc;
	memcpy(v->id, id, 16);
	v->block_size = block_size;
	char hex[33], link[PATH_MAX], target[PATH_MAX];
	hex_id(id, hex);
	snprintf(link, sizeof(link), "%s/" CFS_VIRT_DIR "/" CFS_VIRT_IOVS "/%s", mount, hex);
	if (block_size) {
		size_t l = strlen(link);
		snprintf(link + l, sizeof(link) - l, ".b%zu", block_size);
	}
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n < 0) {
		rc = -errno;
		goto fail;
	}
	target[n] = 0;
	int pfd = proc_fd_target(target);
	if (!pfd && (strncmp(target, "/dev/shm/", 9) != 0 || strchr(target + 9, '/') ||
		     !target[9])) {
		rc = -EINVAL;
		goto fail;
	}
	/* A memfd iov: its creator's descriptor, reopened through /proc. */
	int fd = open(target, O_RDWR | O_CLOEXEC | (pfd ? 0 : O_NOFOLLOW));
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < size) {
		rc = -EINVAL;
		close(fd);
		goto fail;
	}
	v->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	rc = v->base == MAP_FAILED ? -errno : 0; /* before close() can change errno */
	close(fd);
	if (rc) {
		v->base = NULL;
		goto fail;
	}
	v->size = size;
	*out = v;
	return 0;
fail:
	cfs_iov_destroy(v);
	return rc;
}

void cfs_iov_unlink(cfs_iov *v)
{
	if (v)
		shm_drop_name(v);
}

void cfs_iov_destroy(cfs_iov *v)
{
	if (!v)
		return;
	if (v->link[0])
		unlink(v->link);
	shm_drop_name(v);
	if (v->base)
		munmap(v->base, v->size);
	if (v->memfd >= 0)
		close(v->memfd);
	free(v);
}

void *cfs_iov_base(const cfs_iov *v)
{
	return v->base;
}

size_t cfs_iov_size(const cfs_iov *v)
{
	return v->size;
}

const uint8_t *cfs_iov_id(const cfs_iov *v)
{
	return v->id;
}

/* ---- rings ---- */

size_t cfs_ior_size(int entries)
{
	if (entries <= 0 || entries > CFS_RING_MAX_ENTRIES)
		return 0;
	return cfs_ring_bytes((uint32_t)entries);
}

static int open_submit_sem(const char *mount, sem_t **out)
{
	char link[PATH_MAX], target[256];
	snprintf(link, sizeof(link), "%s/" CFS_VIRT_DIR "/" CFS_VIRT_IOVS "/" CFS_SUBMIT_LINK, mount);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = 0;
	if (strncmp(target, "/dev/shm/sem.", 13) != 0 || strchr(target + 13, '/') || !target[13])
		return -EPROTO;
	char name[256];
	snprintf(name, sizeof(name), "/%s", target + 13);
	sem_t *s = sem_open(name, 0);
	if (s == SEM_FAILED)
		return -errno;
	*out = s;
	return 0;
}

int cfs_ior_create(const char *mount, const struct cfs_ior_opts *o, cfs_ior **out)
{
	*out = NULL;
	if (!o || o->entries <= 0 || o->entries > CFS_RING_MAX_ENTRIES || o->timeout_ms < 0 ||
	    (o->io_depth > 0 && o->io_depth > o->entries) ||
	    (o->flags & ~(CFS_IOR_ALLOW_READ_UNCOMMITTED | CFS_IOR_FORBID_READ_HOLES |
	                  CFS_IOR_NOFLUSH)))
		return -EINVAL;
	int rc = check_mount(mount);
	if (rc)
		return rc;
	cfs_ior *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->daemon_pidfd = -1;
	r->submit = SEM_FAILED;
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->wait_lock, NULL);
	r->entries = (uint32_t)o->entries;
	r->for_read = o->for_read ? 1 : 0;
	r->slots = calloc((r->entries + 63) / 64, sizeof(uint64_t));
	if (!r->slots) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = iov_new(mount, &r->mem)) || (rc = random_id(r->mem->id)) ||
	    (rc = shm_make("chainfs-ior-", r->mem->id, cfs_ring_bytes(r->entries), r->mem)))
		goto fail;
	r->hdr = r->mem->base;
	r->sq = cfs_ring_sqes(r->mem->base);
	r->cq = cfs_ring_cqes(r->mem->base, r->entries);
	r->hdr->magic = CFS_RING_MAGIC;
	r->hdr->version = CFS_RING_VERSION;
	r->hdr->entries = r->entries;
	r->hdr->for_read = (uint32_t)r->for_read;
	r->hdr->io_depth = o->io_depth;
	r->hdr->timeout_ms = (uint32_t)o->timeout_ms;
	r->hdr->flags = o->flags;
	if (sem_init(&r->hdr->cq_sem, 1, 0) < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = open_submit_sem(mount, &r->submit)))
		goto fail;
	/* 3FS's name format: .r/.w depth, .p priority, .t timeout, .f flags in binary */
	char suffix[128];
	int l = snprintf(suffix, sizeof(suffix), ".%c%d", r->for_read ? 'r' : 'w', o->io_depth);
	if (o->priority)
		l += snprintf(suffix + l, sizeof(suffix) - (size_t)l, ".p%c",
		              o->priority < 0 ? 'h' : 'l');
	l += snprintf(suffix + l, sizeof(suffix) - (size_t)l, ".t%d", o->timeout_ms);
	if (o->flags) {
		char bin[65];
		int nb = 0;
		for (int b = 63; b >= 0; b--)
			if (nb || (o->flags >> b) & 1)
				bin[nb++] = (char)('0' + ((o->flags >> b) & 1));
		bin[nb] = 0;
		snprintf(suffix + l, sizeof(suffix) - (size_t)l, ".f%s", bin);
	}
	if ((rc = register_link(r->mem, suffix)))
		goto fail;
	shm_drop_name(r->mem); /* both mappings keep the pages */
	if (r->hdr->daemon_state != CFS_RING_SERVING || r->hdr->daemon_pid <= 0) {
		rc = -EPROTO;
		goto fail;
	}
	r->daemon_pidfd = (int)syscall(SYS_pidfd_open, (pid_t)r->hdr->daemon_pid, 0);
	r->write_crc = (r->hdr->daemon_features & CFS_RING_FEAT_WRITE_CRC) != 0;
	*out = r;
	return 0;
fail:
	cfs_ior_destroy(r);
	return rc;
}

void cfs_ior_destroy(cfs_ior *r)
{
	if (!r)
		return;
	cfs_iov_destroy(r->mem);
	if (r->submit != SEM_FAILED)
		sem_close(r->submit);
	if (r->daemon_pidfd >= 0)
		close(r->daemon_pidfd);
	free(r->slots);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->wait_lock);
	free(r);
}

int cfs_ior_entries(const cfs_ior *r)
{
	return (int)r->entries;
}

/* 1 when the daemon serving R is gone. */
static int daemon_gone(cfs_ior *r)
{
	if (atomic_load_explicit(&r->dead, memory_order_relaxed))
		return 1;
	if (r->daemon_pidfd < 0)
		return 0;
	struct pollfd p = {.fd = r->daemon_pidfd, .events = POLLIN};
	if (poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP))) {
		atomic_store_explicit(&r->dead, 1, memory_order_relaxed);
		return 1;
	}
	return 0;
}

/* ---- file registration ---- */

struct regent {
	int used;
	int fd, dupfd;   /* the pair; the entry is stored at both indexes */
	uint32_t reg;    /* daemon registration id */
	uint32_t mode;   /* 1 read, 2 write */
	pid_t pid;       /* the process the registration belongs to */
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct regent *regs;
static size_t nregs;

/* Caller holds reg_lock. */
static struct regent *reg_slot(int fd, int grow)
{
	if (fd < 0)
		return NULL;
	if ((size_t)fd >= nregs) {
		if (!grow)
			return NULL;
		size_t n = nregs ? nregs : 256;
		while (n <= (size_t)fd)
			n *= 2;
		struct regent *nr = realloc(regs, n * sizeof(*nr));
		if (!nr)
			return NULL;
		memset(nr + nregs, 0, (n - nregs) * sizeof(*nr));
		regs = nr;
		nregs = n;
	}
	return &regs[fd];
}

static int ioc_reg(int fd, uint32_t *reg, uint32_t *mode)
{
	struct cfs_ioc_reg a = {0};
	if (ioctl(fd, CFS_IOC_REG, &a) < 0)
		return -errno;
	*reg = a.reg;
	*mode = a.mode;
	return 0;
}

int cfs_reg_fd(int fd, uint64_t flags)
{
	if (flags)
		return -EINVAL;
	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	if (!cfs_is_chainfs(fd))
		return -EBADF;
	pthread_mutex_lock(&reg_lock);
	struct regent *e = reg_slot(fd, 1);
	if (!e) {
		pthread_mutex_unlock(&reg_lock);
		return -ENOMEM;
	}
	if (e->used) {
		pthread_mutex_unlock(&reg_lock);
		return -EINVAL;
	}
	uint32_t reg = 0, mode = 0;
	int rc = ioc_reg(fd, &reg, &mode);
	if (rc) {
		pthread_mutex_unlock(&reg_lock);
		return rc;
	}
	int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (d < 0) {
		rc = -errno;
		ioctl(fd, CFS_IOC_DEREG, &reg);
		pthread_mutex_unlock(&reg_lock);
		return rc;
	}
	struct regent *de = reg_slot(d, 1);
	e = reg_slot(fd, 0); /* the table may have moved */
	if (!de || de->used) {
		ioctl(fd, CFS_IOC_DEREG, &reg);
		close(d);
		pthread_mutex_unlock(&reg_lock);
		return de ? -EINVAL : -ENOMEM;
	}
	struct regent v = {1, fd, d, reg, mode, getpid()};
	*e = v;
	*de = v;
	pthread_mutex_unlock(&reg_lock);
	return d;
}

void cfs_dereg_fd(int fd)
{
	pthread_mutex_lock(&reg_lock);
	struct regent *e = reg_slot(fd, 0);
	if (!e || !e->used) {
		pthread_mutex_unlock(&reg_lock);
		return;
	}
	struct regent v = *e;
	memset(&regs[v.fd], 0, sizeof(regs[v.fd]));
	memset(&regs[v.dupfd], 0, sizeof(regs[v.dupfd]));
	pthread_mutex_unlock(&reg_lock);
	if (v.pid == getpid())
		ioctl(v.dupfd, CFS_IOC_DEREG, &v.reg);
	close(v.dupfd);
}

/* The registration of FD for this process: re-registers after a fork. */
static int reg_lookup(int fd, uint32_t *reg, uint32_t *mode)
{
	pthread_mutex_lock(&reg_lock);
	struct regent *e = reg_slot(fd, 0);
	if (!e || !e->used) {
		pthread_mutex_unlock(&reg_lock);
		return -EBADF;
	}
	if (e->pid != getpid()) {
		uint32_t r = 0, m = 0;
		int rc = ioc_reg(e->dupfd, &r, &m);
		if (rc) {
			pthread_mutex_unlock(&reg_lock);
			return rc;
		}
		pid_t me = getpid();
		for (int i = 0; i < 2; i++) {
			struct regent *x = &regs[i ? e->dupfd : e->fd];
			x->reg = r;
			x->mode = m;
			x->pid = me;
		}
	}
	*reg = e->reg;
	*mode = e->mode;
	pthread_mutex_unlock(&reg_lock);
	return 0;
}

/* ---- I/O ---- */

/* cfs_prep_io; CRC (may be NULL): a write's CRC32C of its bytes, sent
 * along when the daemon takes it. */
static int prep_io(cfs_ior *r, const uint8_t iov_id[16], const void *iov_base, size_t iov_size,
                   int read, void *ptr, int fd, uint64_t off, uint64_t len, const void *userdata,
                   const uint32_t *crc)
{
	if (!r || !iov_id || !iov_base || !ptr || (read ? 1 : 0) != r->for_read || len == 0 ||
	    len > CFS_IO_MAX_LEN)
		return -EINVAL;
	uintptr_t b = (uintptr_t)iov_base, p = (uintptr_t)ptr;
	if (p < b || iov_size > UINTPTR_MAX - b || p - b > iov_size || len > iov_size - (p - b))
		return -EINVAL;
	if (daemon_gone(r))
		return -ENOTCONN;
	uint32_t reg = 0, mode = 0;
	int rc = reg_lookup(fd < 0 && fd != INT_MIN ? -fd : fd, &reg, &mode);
	if (rc)
		return rc;
	if (!(mode & (read ? 1u : 2u)))
		return -EACCES;
	pthread_mutex_lock(&r->lock);
	if (r->inflight >= r->entries) {
		pthread_mutex_unlock(&r->lock);
		return -EAGAIN;
	}
	uint32_t idx = UINT32_MAX;
	for (uint32_t w = 0; w < (r->entries + 63) / 64; w++) {
		if (r->slots[w] == UINT64_MAX)
			continue;
		uint32_t bit = (uint32_t)__builtin_ctzll(~r->slots[w]);
		if (w * 64 + bit >= r->entries)
			break;
		r->slots[w] |= 1ull << bit;
		idx = w * 64 + bit;
		break;
	}
	if (idx == UINT32_MAX) {
		pthread_mutex_unlock(&r->lock);
		return -EAGAIN;
	}
	r->inflight++;
	pthread_mutex_unlock(&r->lock);
	struct cfs_ring_sqe *s = &r->sq[r->sq_tail % r->entries];
	memcpy(s->buf_id, iov_id, 16);
	s->buf_off = p - b;
	s->file_off = off;
	s->len = len;
	s->userdata = (uint64_t)(uintptr_t)userdata;
	s->reg = reg;
	s->index = idx;
	s->op = read ? CFS_OP_READ : CFS_OP_WRITE;
	s->reserved = 0;
	if (!read && crc && r->write_crc) {
		s->op |= CFS_OP_F_CRC;
		s->reserved = *crc;
	}
	r->sq_tail++;
	atomic_store_explicit(&r->hdr->sq_tail, r->sq_tail, memory_order_release);
	return (int)idx;
}

int cfs_prep_io(cfs_ior *r, const uint8_t iov_id[16], const void *iov_base, size_t iov_size,
                int read, void *ptr, int fd, uint64_t off, uint64_t len, const void *userdata)
{
	return prep_io(r, iov_id, iov_base, iov_size, read, ptr, fd, off, len, userdata, NULL);
}

int cfs_prep_write_crc(cfs_ior *r, const cfs_iov *v, void *ptr, int fd, uint64_t off, uint64_t len,
                       uint32_t crc, const void *userdata)
{
	if (!v)
		return -EINVAL;
	return prep_io(r, v->id, v->base, v->size, 0, ptr, fd, off, len, userdata, &crc);
}

int cfs_ior_write_crc(const cfs_ior *r)
{
	return r && r->write_crc;
}

int cfs_prep_iov(cfs_ior *r, const cfs_iov *v, int read, void *ptr, int fd, uint64_t off,
                 uint64_t len, const void *userdata)
{
	if (!v)
		return -EINVAL;
	return cfs_prep_io(r, v->id, v->base, v->size, read, ptr, fd, off, len, userdata);
}

int cfs_submit_ios(cfs_ior *r)
{
	if (!r)
		return -EINVAL;
	if (daemon_gone(r))
		return -ENOTCONN;
	if (sem_post(r->submit) < 0)
		return -errno;
	return 0;
}

static void ts_add_ms(struct timespec *t, long ms)
{
	t->tv_nsec += (ms % 1000) * 1000000L;
	t->tv_sec += ms / 1000 + t->tv_nsec / 1000000000L;
	t->tv_nsec %= 1000000000L;
}

static int ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int cfs_wait_for_ios(cfs_ior *r, struct cfs_cqe *cqes, int n, int min_results,
                     const struct timespec *abs_timeout)
{
	return cfs_wait_for_ios_crc(r, cqes, NULL, n, min_results, abs_timeout);
}

int cfs_wait_for_ios_crc(cfs_ior *r, struct cfs_cqe *cqes, struct cfs_cqe_crc *crcs, int n,
                         int min_results, const struct timespec *abs_timeout)
{
	if (!r || !cqes || n <= 0)
		return -EINVAL;
	if (min_results > n)
		min_results = n;
	int filled = 0;
	pthread_mutex_lock(&r->wait_lock);
	for (;;) {
		uint32_t head = atomic_load_explicit(&r->hdr->cq_head, memory_order_acquire);
		uint32_t tail = atomic_load_explicit(&r->hdr->cq_tail, memory_order_relaxed);
		int got = 0;
		while (tail != head && filled < n) {
			const struct cfs_ring_cqe *c = &r->cq[tail % r->entries];
			uint32_t idx = c->index;
			cqes[filled].index = (int32_t)idx;
			cqes[filled].reserved = 0;
			cqes[filled].result = c->result;
			cqes[filled].userdata = (const void *)(uintptr_t)c->userdata;
			if (crcs) {
				crcs[filled].crc = c->reserved;
				crcs[filled].ok = (c->reserved2 & CFS_RING_CQE_F_CRC) != 0;
			}
			filled++;
			got++;
			tail++;
			pthread_mutex_lock(&r->lock);
			if (idx < r->entries && (r->slots[idx / 64] >> (idx % 64)) & 1) {
				r->slots[idx / 64] &= ~(1ull << (idx % 64));
				r->inflight--;
			}
			pthread_mutex_unlock(&r->lock);
		}
		if (got)
			atomic_store_explicit(&r->hdr->cq_tail, tail, memory_order_release);
		if (filled >= n || (filled >= min_results && !got))
			break;
		if (got)
			continue;
		pthread_mutex_lock(&r->lock);
		uint32_t pending = r->inflight;
		pthread_mutex_unlock(&r->lock);
		if (pending && daemon_gone(r)) {
			if (!filled)
				filled = -ENOTCONN;
			break;
		}
		struct timespec now, until;
		clock_gettime(CLOCK_REALTIME, &now);
		if (abs_timeout && !ts_before(&now, abs_timeout))
			break;
		until = now;
		ts_add_ms(&until, WAIT_SLICE_MS);
		if (abs_timeout && ts_before(abs_timeout, &until))
			until = *abs_timeout;
		sem_timedwait(&r->hdr->cq_sem, &until);
	}
	pthread_mutex_unlock(&r->wait_lock);
	return filled;
}
