/* usrbio_stub.c - an in-process stand-in for the USRBIO C API, linked only
 * into the stub build of the Python module (build/python-stub) that
 * test_py_unit runs. It lets the unit tests check what the Python layer
 * itself does (argument parsing, iovec slicing and the buffer protocol,
 * errno mapping, wait() counting and timeouts, the GIL released while
 * waiting) without a mount. The real API is tested through a real mount
 * by test_py_hf3fs_io.
 *
 * Model: "the mount" is the directory named by $CFS_STUB_MOUNT (a plain
 * local directory); files under it count as on the file system. Each
 * ring has one worker thread that serves submitted I/Os with
 * pread/pwrite on the registered fd's dup, sleeping $CFS_STUB_DELAY_MS
 * before each one. prepare only fills a slot; submit hands the prepared
 * slots to the worker (so a test can fill a ring and see EAGAIN). Error
 * returns follow 3FS's documented contract: EINVAL for a wrong direction,
 * a zero length or a range outside the iov, EBADF for an unregistered fd,
 * EACCES for a write through a read-only fd, EAGAIN for a full ring;
 * reg_fd returns a positive errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hf3fs_usrbio.h"

#define STUB_MAX_FDS     4096
#define STUB_MAX_ENTRIES (1 << 16)

struct stub_regfd {
	int used;
	int dupfd;
	int accmode;
};

static struct stub_regfd regfds[STUB_MAX_FDS];
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

struct stub_req {
	int state; /* 0 free, 1 prepared, 2 submitted, 3 done */
	int read;
	int fd;
	uint8_t *ptr;
	size_t off;
	uint64_t len;
	const void *userdata;
	int64_t result;
};

struct stub_ring {
	pthread_mutex_t lock;
	pthread_cond_t work;
	pthread_cond_t done;
	pthread_t worker;
	int stop;
	int entries;
	int delay_ms;
	struct stub_req *reqs;
	int *cq; /* indices of done requests, FIFO */
	int cq_head, cq_len;
};

static const char *stub_mount(void)
{
	const char *m = getenv("CFS_STUB_MOUNT");
	return m && *m ? m : NULL;
}

static int under_mount(const char *real)
{
	const char *m = stub_mount();
	if (!m)
		return 0;
	char rm[PATH_MAX];
	if (!realpath(m, rm))
		return 0;
	size_t n = strlen(rm);
	return strncmp(real, rm, n) == 0 && (real[n] == '/' || real[n] == 0);
}

bool hf3fs_is_hf3fs(int fd)
{
	char link[64], real[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, real, sizeof(real) - 1);
	if (n < 0)
		return false;
	real[n] = 0;
	return under_mount(real);
}

int hf3fs_extract_mount_point(char *mp, int size, const char *path)
{
	char real[PATH_MAX], rm[PATH_MAX];
	const char *m = stub_mount();
	if (!m || !realpath(path, real) || !under_mount(real) || !realpath(m, rm))
		return -1;
	int need = (int)strlen(rm) + 1;
	if (need <= size)
		memcpy(mp, rm, (size_t)need);
	return need;
}

int hf3fs_iovwrap(struct hf3fs_iov *iov, void *base, const uint8_t id[16], const char *mount,
                  size_t size, size_t block_size, int numa)
{
	if (!iov || !base || !mount || strlen(mount) >= sizeof(iov->mount_point))
		return -EINVAL;
	if (block_size > size)
		return -EINVAL;
	memset(iov, 0, sizeof(*iov));
	iov->base = base;
	memcpy(iov->id, id, 16);
	strcpy(iov->mount_point, mount);
	iov->size = size;
	iov->block_size = block_size;
	iov->numa = numa;
	return 0;
}

int hf3fs_iovcreate(struct hf3fs_iov *iov, const char *mount, size_t size, size_t block_size,
                    int numa)
{
	if (!mount || !under_mount(mount))
		return -EINVAL;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	uint8_t id[16];
	for (int i = 0; i < 16; i++)
		id[i] = (uint8_t)rand();
	int rc = hf3fs_iovwrap(iov, p, id, mount, size, block_size, numa);
	if (rc < 0) {
		munmap(p, size);
		return rc;
	}
	iov->iovh = p;
	return 0;
}

void hf3fs_iovunlink(struct hf3fs_iov *iov)
{
	(void)iov;
}

void hf3fs_iovdestroy(struct hf3fs_iov *iov)
{
	if (iov && iov->iovh) {
		munmap(iov->iovh, iov->size);
		iov->iovh = NULL;
	}
}

size_t hf3fs_ior_size(int entries)
{
	return 4096 + (size_t)(entries > 0 ? entries : 0) * 64;
}

static void *stub_worker(void *arg)
{
	struct stub_ring *r = arg;
	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		int found = -1;
		for (int i = 0; i < r->entries; i++)
			if (r->reqs[i].state == 2) {
				found = i;
				break;
			}
		if (found < 0) {
			pthread_cond_wait(&r->work, &r->lock);
			continue;
		}
		struct stub_req q = r->reqs[found];
		pthread_mutex_unlock(&r->lock);
		if (r->delay_ms > 0)
			usleep((useconds_t)r->delay_ms * 1000);
		ssize_t n = q.read ? pread(q.fd, q.ptr, q.len, (off_t)q.off)
		                   : pwrite(q.fd, q.ptr, q.len, (off_t)q.off);
		pthread_mutex_lock(&r->lock);
		r->reqs[found].result = n < 0 ? -errno : n;
		r->reqs[found].state = 3;
		r->cq[(r->cq_head + r->cq_len) % r->entries] = found;
		r->cq_len++;
		pthread_cond_broadcast(&r->done);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

int hf3fs_iorcreate4(struct hf3fs_ior *ior, const char *mount, int entries, bool for_read,
                     int io_depth, int timeout, int numa, uint64_t flags)
{
	if (!ior || !mount || !*mount || timeout < 0 || entries <= 0 || entries > STUB_MAX_ENTRIES)
		return -EINVAL;
	if (!under_mount(mount))
		return -ENOENT; /* no virtual directory there */
	struct stub_ring *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->entries = entries;
	r->reqs = calloc((size_t)entries, sizeof(*r->reqs));
	r->cq = calloc((size_t)entries, sizeof(*r->cq));
	const char *d = getenv("CFS_STUB_DELAY_MS");
	r->delay_ms = d ? atoi(d) : 0;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->work, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_REALTIME);
	pthread_cond_init(&r->done, &ca);
	pthread_condattr_destroy(&ca);
	if (!r->reqs || !r->cq || pthread_create(&r->worker, NULL, stub_worker, r) != 0) {
		free(r->reqs);
		free(r->cq);
		free(r);
		return -ENOMEM;
	}
	memset(ior, 0, sizeof(*ior));
	ior->iorh = r;
	snprintf(ior->mount_point, sizeof(ior->mount_point), "%s", mount);
	ior->for_read = for_read;
	ior->io_depth = io_depth;
	ior->timeout = timeout;
	ior->flags = flags;
	ior->iov.size = hf3fs_ior_size(entries);
	(void)numa;
	return 0;
}

int hf3fs_iorcreate3(struct hf3fs_ior *ior, const char *mount, int entries, bool for_read,
                     int io_depth, int priority, int timeout, int numa)
{
	int rc = hf3fs_iorcreate4(ior, mount, entries, for_read, io_depth, timeout, numa, 0);
	if (rc == 0)
		ior->priority = priority;
	return rc;
}

void hf3fs_iordestroy(struct hf3fs_ior *ior)
{
	if (!ior || !ior->iorh)
		return;
	struct stub_ring *r = ior->iorh;
	pthread_mutex_lock(&r->lock);
	r->stop = 1;
	pthread_cond_broadcast(&r->work);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->worker, NULL);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->work);
	pthread_cond_destroy(&r->done);
	free(r->reqs);
	free(r->cq);
	free(r);
	ior->iorh = NULL;
}

int hf3fs_reg_fd(int fd, uint64_t flags)
{
	(void)flags;
	if (fd < 0 || fd >= STUB_MAX_FDS || !hf3fs_is_hf3fs(fd))
		return EBADF;
	int acc = fcntl(fd, F_GETFL);
	if (acc < 0)
		return errno;
	pthread_mutex_lock(&reg_lock);
	if (regfds[fd].used) {
		pthread_mutex_unlock(&reg_lock);
		return EINVAL;
	}
	int d = dup(fd);
	if (d < 0 || d >= STUB_MAX_FDS) {
		int e = d < 0 ? errno : EMFILE;
		if (d >= 0)
			close(d);
		pthread_mutex_unlock(&reg_lock);
		return e;
	}
	regfds[fd] = (struct stub_regfd){1, d, acc & O_ACCMODE};
	regfds[d] = (struct stub_regfd){1, d, acc & O_ACCMODE};
	pthread_mutex_unlock(&reg_lock);
	return -d;
}

void hf3fs_dereg_fd(int fd)
{
	if (fd < 0 || fd >= STUB_MAX_FDS)
		return;
	pthread_mutex_lock(&reg_lock);
	if (regfds[fd].used) {
		int d = regfds[fd].dupfd;
		regfds[fd].used = 0;
		regfds[d].used = 0;
		close(d);
	}
	pthread_mutex_unlock(&reg_lock);
}

int hf3fs_io_entries(const struct hf3fs_ior *ior)
{
	return ior && ior->iorh ? ((struct stub_ring *)ior->iorh)->entries : 0;
}

int hf3fs_prep_io(const struct hf3fs_ior *ior, const struct hf3fs_iov *iov, bool read, void *ptr,
                  int fd, size_t off, uint64_t len, const void *userdata)
{
	uint8_t *p = ptr;
	int afd = abs(fd);
	if (!ior || !ior->iorh || read != ior->for_read || !iov || len == 0 || !iov->base ||
	    p < iov->base || p + len > iov->base + iov->size || afd >= STUB_MAX_FDS)
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	struct stub_regfd rf = regfds[afd];
	pthread_mutex_unlock(&reg_lock);
	if (!rf.used)
		return -EBADF;
	if ((read && rf.accmode == O_WRONLY) || (!read && rf.accmode == O_RDONLY))
		return -EACCES;
	struct stub_ring *r = ior->iorh;
	pthread_mutex_lock(&r->lock);
	int idx = -1;
	for (int i = 0; i < r->entries; i++)
		if (r->reqs[i].state == 0) {
			idx = i;
			break;
		}
	if (idx >= 0)
		r->reqs[idx] = (struct stub_req){1, read, rf.dupfd, p, off, len, userdata, 0};
	pthread_mutex_unlock(&r->lock);
	return idx < 0 ? -EAGAIN : idx;
}

int hf3fs_submit_ios(const struct hf3fs_ior *ior)
{
	if (!ior || !ior->iorh)
		return -EINVAL;
	struct stub_ring *r = ior->iorh;
	pthread_mutex_lock(&r->lock);
	for (int i = 0; i < r->entries; i++)
		if (r->reqs[i].state == 1)
			r->reqs[i].state = 2;
	pthread_cond_broadcast(&r->work);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

int hf3fs_wait_for_ios(const struct hf3fs_ior *ior, struct hf3fs_cqe *cqes, int cqec,
                       int min_results, const struct timespec *abs_timeout)
{
	if (cqec <= 0 || !ior || !ior->iorh)
		return -EINVAL;
	if (min_results > cqec)
		min_results = cqec;
	struct stub_ring *r = ior->iorh;
	int filled = 0;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		while (r->cq_len > 0 && filled < cqec) {
			int i = r->cq[r->cq_head];
			r->cq_head = (r->cq_head + 1) % r->entries;
			r->cq_len--;
			cqes[filled].index = i;
			cqes[filled].reserved = 0;
			cqes[filled].result = r->reqs[i].result;
			cqes[filled].userdata = r->reqs[i].userdata;
			r->reqs[i].state = 0;
			filled++;
		}
		if (filled >= min_results || filled >= cqec)
			break;
		int rc = abs_timeout ? pthread_cond_timedwait(&r->done, &r->lock, abs_timeout)
		                     : pthread_cond_wait(&r->done, &r->lock);
		if (rc == ETIMEDOUT && r->cq_len == 0)
			break;
	}
	pthread_mutex_unlock(&r->lock);
	return filled;
}
