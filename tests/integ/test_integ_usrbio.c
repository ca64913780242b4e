/* test_integ_usrbio.c - shared-memory ring I/O (include/chainfs.h, the
 * mount's src/usrbio) on a real `chainfs up` cluster.
 *
 * Data: files written through rings read back identical through FUSE and
 * the other way round, for sizes 1 B .. 64 MiB at unaligned offsets across
 * chunk (1 MiB) and chain boundaries; holes read as zeros, or fail with
 * -ENODATA on a CFS_IOR_FORBID_READ_HOLES ring; reads past EOF are short;
 * stat shows a ring-written length at once; a write whose CRC32C (sent
 * with it) does not match its bytes is refused.
 * Errors: every bad input has its errno, at prep time or in the
 * completion; entries crafted by hand in shared memory (a "raw ring": the
 * ABI of src/usrbio/ring_abi.h written directly, as a hostile program
 * would) reach the daemon's checks; a non-root process cannot read a 0600
 * root file through a ring, even guessing registration ids; a read-only
 * registration cannot write.
 * Robustness: kill -9 of an application with I/Os in flight (the daemon
 * stays up and unmaps its memory: /proc/PID/maps of the mount); a buffer
 * truncated under the daemon (SIGBUS guard: -EFAULT, daemon alive); the
 * 3FS-API program tests/usrbio/hf3fs_compat; the mount killed while an
 * application waits (-ENOTCONN, no hang); kill -9 of a storage service
 * with ring writes in flight (every completion arrives; every acknowledged
 * write reads back intact after the service is back and resynced).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chainfs.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "integ_env.h"
#include "lib/cfs_usrbio_int.h"
#include "testenv.h"
#include "usrbio/ring_abi.h"

static struct integ env;
static cfs_iov *big;             /* 65 MiB shared buffer for the data tests */
#define BIG_SIZE ((size_t)65 << 20)
#define MiB (1ull << 20)

static unsigned char pat(uint64_t i, unsigned seed)
{
	return (unsigned char)((i * 2654435761u) >> 13 ^ seed ^ (i >> 20));
}

static void path_of(const char *rel, char *out, size_t cap)
{
	integ_path(&env, rel, out, cap);
}

static cfs_ior *ring(int for_read, int entries, uint64_t flags)
{
	struct cfs_ior_opts o = {.entries = entries, .for_read = for_read, .flags = flags};
	cfs_ior *r = NULL;
	assert_int_equal(cfs_ior_create(env.mnt, &o, &r), 0);
	return r;
}

/* The last one_io's completion CRC (ring_abi.h CFS_RING_CQE_F_CRC). */
static struct cfs_cqe_crc last_crc;

/* Runs one I/O and returns its result. */
static int64_t one_io(cfs_ior *r, int read, void *ptr, int fd, uint64_t off, uint64_t len)
{
	int idx = cfs_prep_iov(r, big, read, ptr, fd, off, len, (void *)0x5eed);
	if (idx < 0)
		return idx;
	assert_int_equal(cfs_submit_ios(r), 0);
	struct cfs_cqe c;
	assert_int_equal(cfs_wait_for_ios_crc(r, &c, &last_crc, 1, 1, NULL), 1);
	assert_int_equal(c.index, idx);
	assert_ptr_equal(c.userdata, (void *)0x5eed);
	return c.result;
}

/* Voluntary context switches of the mount's ring watcher ("ub-watch"). */
static long watcher_switches(void)
{
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/task", integ_role_pid(&env, "mount"));
	DIR *d = opendir(dir);
	assert_non_null(d);
	long n = -1;
	struct dirent *e;
	while (n < 0 && (e = readdir(d))) {
		char p[640], line[128];
		snprintf(p, sizeof(p), "%s/%s/comm", dir, e->d_name);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		int named = fgets(line, sizeof(line), f) && !strcmp(line, "ub-watch\n");
		fclose(f);
		snprintf(p, sizeof(p), "%s/%s/status", dir, e->d_name);
		if (!named || !(f = fopen(p, "r")))
			continue;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1)
				break;
		fclose(f);
	}
	closedir(d);
	assert_true(n >= 0);
	return n;
}

/* With nothing registered the watcher has no ring to poll: it sleeps
 * (1 s) instead of waking every 2 ms. */
static void test_idle_watcher(void **state)
{
	long a = watcher_switches();
	clock_sleep_ms(1000);
	long b = watcher_switches();
	print_message("idle watcher: %ld wake-ups in 1 s\n", b - a);
	assert_true(b - a < 30);
}

static void test_setup_buffers(void **state)
{
	assert_int_equal(cfs_iov_create(env.mnt, BIG_SIZE, 0, -1, &big), 0);
	char mp[512];
	char p[1024];
	path_of("", p, sizeof(p));
	int n = cfs_extract_mount_point(mp, sizeof(mp), p);
	assert_true(n > 1);
	char want[1024];
	assert_non_null(realpath(env.mnt, want));
	assert_string_equal(mp, want);
	assert_int_equal(cfs_extract_mount_point(mp, sizeof(mp), "/proc/self"), -1);
}

/* A small file written through FUSE keeps its bytes in meta (inline data,
 * file_io.h); registering it for ring I/O moves them to chunks, so a ring
 * read returns them, and so do later ring and FUSE I/O. */
static void test_inline_file_ring(void **state)
{
	char p[1024];
	unsigned char src[3000], chk[3000];
	cfs_ior *rr = ring(1, 4, 0), *wr = ring(0, 4, 0);
	char *b = cfs_iov_base(big);
	for (size_t k = 0; k < sizeof(src); k++)
		src[k] = pat(k, 91);
	snprintf(p, sizeof(p), "%s/inline-ring", env.mnt);
	int fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, src, sizeof(src), 0), (ssize_t)sizeof(src));
	assert_true(cfs_reg_fd(fd, 0) > 0);
	memset(b, 0, sizeof(src));
	assert_int_equal(one_io(rr, 1, b, fd, 0, sizeof(src)), (int64_t)sizeof(src));
	assert_memory_equal(b, src, sizeof(src));
	/* a ring write past the old end, read through FUSE */
	memcpy(b, src, 100);
	assert_int_equal(one_io(wr, 0, b, fd, 5000, 100), 100);
	assert_int_equal(pread(fd, chk, 100, 5000), 100);
	assert_memory_equal(chk, src, 100);
	assert_int_equal(pread(fd, chk, sizeof(src), 0), (ssize_t)sizeof(src));
	assert_memory_equal(chk, src, sizeof(src));
	cfs_dereg_fd(fd);
	close(fd);
	cfs_ior_destroy(rr);
	cfs_ior_destroy(wr);
}

/* Ring writes read back through FUSE, FUSE writes read back through rings. */
static void test_roundtrip_sizes(void **state)
{
	static const uint64_t sizes[] = {1, 4095, 4096, 65537, MiB - 1, MiB + 1, 3 * MiB + 12345,
	                                 64 * MiB};
	static const uint64_t offs[] = {0, 7, MiB - 3, 2 * MiB + 4093};
	char p[1024];
	cfs_ior *rr = ring(1, 4, 0), *wr = ring(0, 4, 0);
	char *b = cfs_iov_base(big);
	unsigned char *chk = malloc(BIG_SIZE);
	assert_non_null(chk);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t len = sizes[i], off = offs[i % 4];
		unsigned seed = (unsigned)i * 7 + 1;
		/* ring -> FUSE */
		snprintf(p, sizeof(p), "%s/rt-ring-%zu", env.mnt, i);
		int fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0644);
		assert_true(fd >= 0);
		assert_true(cfs_reg_fd(fd, 0) > 0);
		size_t boff = (size_t)(i * 4099 % 8192); /* unaligned in the buffer too */
		for (uint64_t k = 0; k < len; k++)
			b[boff + k] = (char)pat(k, seed);
		assert_int_equal(one_io(wr, 0, b + boff, fd, off, len), (int64_t)len);
		struct stat st;
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal((uint64_t)st.st_size, off + len); /* right after completion */
		assert_int_equal(pread(fd, chk, len, (off_t)off), (ssize_t)len);
		for (uint64_t k = 0; k < len; k++)
			if (chk[k] != pat(k, seed))
				fail_msg("ring->fuse size %llu off %llu: byte %llu differs",
				         (unsigned long long)len, (unsigned long long)off,
				         (unsigned long long)k);
		cfs_dereg_fd(fd);
		close(fd);
		/* FUSE -> ring */
		snprintf(p, sizeof(p), "%s/rt-fuse-%zu", env.mnt, i);
		fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0644);
		assert_true(fd >= 0);
		for (uint64_t k = 0; k < len; k++)
			chk[k] = pat(k, seed + 1);
		assert_int_equal(pwrite(fd, chk, len, (off_t)off), (ssize_t)len);
		assert_true(cfs_reg_fd(fd, 0) > 0);
		memset(b, 0xEE, len + boff + 16);
		assert_int_equal(one_io(rr, 1, b + boff, fd, off, len), (int64_t)len);
		if (memcmp(b + boff, chk, len) != 0)
			fail_msg("fuse->ring size %llu differs", (unsigned long long)len);
		/* The completion's CRC is the data's, folded over every piece. */
		assert_true(last_crc.ok);
		assert_int_equal(last_crc.crc, crc32c(0, chk, len));
		assert_int_equal((unsigned char)b[boff + len], 0xEE); /* nothing past the range */
		cfs_dereg_fd(fd);
		close(fd);
	}
	free(chk);
	cfs_ior_destroy(rr);
	cfs_ior_destroy(wr);
}

/* Holes read as zeros (or -ENODATA), reads past EOF are short. */
static void test_holes_and_eof(void **state)
{
	char p[1024];
	path_of("sparse", p, sizeof(p));
	int fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0644);
	assert_true(fd >= 0);
	char blk[4096];
	memset(blk, 'A', sizeof(blk));
	assert_int_equal(pwrite(fd, blk, sizeof(blk), 0), 4096);
	assert_int_equal(pwrite(fd, blk, sizeof(blk), 5 * MiB), 4096);
	assert_true(cfs_reg_fd(fd, 0) > 0);
	cfs_ior *r = ring(1, 4, 0), *strict = ring(1, 4, CFS_IOR_FORBID_READ_HOLES);
	char *b = cfs_iov_base(big);
	uint64_t size = 5 * MiB + 4096;
	memset(b, 0x77, size);
	assert_int_equal(one_io(r, 1, b, fd, 0, size), (int64_t)size);
	assert_false(last_crc.ok); /* zeros the daemon filled in are not storage's */
	for (uint64_t k = 0; k < size; k++) {
		char want = (k < 4096 || k >= 5 * MiB) ? 'A' : 0;
		if (b[k] != want)
			fail_msg("sparse byte %llu is %d", (unsigned long long)k, b[k]);
	}
	assert_int_equal(one_io(strict, 1, b, fd, 0, size), -ENODATA);
	assert_int_equal(one_io(strict, 1, b, fd, 5 * MiB, 4096), 4096);
	/* Past EOF: short, then 0. */
	assert_int_equal(one_io(r, 1, b, fd, size - 10, 100), 10);
	assert_true(last_crc.ok);
	assert_int_equal(last_crc.crc, crc32c(0, blk, 10));
	assert_int_equal(one_io(r, 1, b, fd, size + 100, 100), 0);
	assert_false(last_crc.ok);
	cfs_dereg_fd(fd);
	close(fd);
	cfs_ior_destroy(r);
	cfs_ior_destroy(strict);
}

/* ---- a raw ring: the ABI written by hand ---- */

struct raw {
	struct cfs_ring_hdr *h;
	size_t size;
	uint32_t entries, tail;
	char link[1024];
};

static int raw_create(struct raw *w, int for_read, uint32_t entries)
{
	uint8_t id[16];
	for (int i = 0; i < 16; i++)
		id[i] = (uint8_t)(rand() ^ getpid() ^ i * 17);
	char hex[33], name[80];
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", id[i]);
	snprintf(name, sizeof(name), "/raw-ring-%s", hex);
	w->entries = entries;
	w->size = cfs_ring_bytes(entries);
	int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)w->size) < 0)
		return -errno;
	w->h = mmap(NULL, w->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (w->h == MAP_FAILED)
		return -errno;
	w->h->magic = CFS_RING_MAGIC;
	w->h->version = CFS_RING_VERSION;
	w->h->entries = entries;
	w->h->for_read = (uint32_t)for_read;
	sem_init(&w->h->cq_sem, 1, 0);
	char target[128];
	snprintf(target, sizeof(target), "/dev/shm%s", name);
	snprintf(w->link, sizeof(w->link), "%s/3fs-virt/iovs/%s.%c0.t0", env.mnt, hex,
	         for_read ? 'r' : 'w');
	int rc = symlink(target, w->link) < 0 ? -errno : 0;
	shm_unlink(name);
	w->tail = 0;
	return rc;
}

static void raw_destroy(struct raw *w)
{
	unlink(w->link);
	munmap(w->h, w->size);
}

/* Submits SQE and returns the completion's result (waits up to 10 s). */
static int64_t raw_io(struct raw *w, const struct cfs_ring_sqe *sqe)
{
	struct cfs_ring_sqe *sq = cfs_ring_sqes(w->h);
	sq[w->tail % w->entries] = *sqe;
	w->tail++;
	atomic_store(&w->h->sq_tail, w->tail);
	for (int i = 0; i < 10000; i++) {
		uint32_t head = atomic_load(&w->h->cq_head), t = atomic_load(&w->h->cq_tail);
		if (head != t) {
			struct cfs_ring_cqe c = cfs_ring_cqes(w->h, w->entries)[t % w->entries];
			atomic_store(&w->h->cq_tail, t + 1);
			return c.result;
		}
		usleep(1000);
	}
	fail_msg("raw ring: no completion in 10 s");
	return 0;
}

/* Every bad input, with its errno. */
static void test_bad_inputs(void **state)
{
	char p[1024];
	path_of("bad", p, sizeof(p));
	int fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "hello", 5, 0), 5);
	cfs_ior *r = ring(1, 2, 0);
	char *b = cfs_iov_base(big);
	/* Not registered; not on the mount; registered twice; bad flags. */
	assert_int_equal(cfs_prep_iov(r, big, 1, b, fd, 0, 5, NULL), -EBADF);
	int devnull = open("/dev/null", O_RDONLY);
	assert_int_equal(cfs_reg_fd(devnull, 0), -EBADF);
	assert_int_equal(cfs_reg_fd(-1, 0), -EBADF);
	assert_int_equal(cfs_reg_fd(fd, 1), -EINVAL);
	int d = cfs_reg_fd(fd, 0);
	assert_true(d > 0);
	assert_int_equal(cfs_reg_fd(fd, 0), -EINVAL);
	/* A directory cannot be registered (the ioctl says EINVAL). */
	int dfd = open(env.mnt, O_RDONLY | O_DIRECTORY);
	assert_true(cfs_is_chainfs(dfd));
	assert_int_equal(cfs_reg_fd(dfd, 0), -EINVAL);
	close(dfd);
	/* Prep-time checks. */
	assert_int_equal(cfs_prep_iov(r, big, 1, b, fd, 0, 0, NULL), -EINVAL);
	assert_int_equal(cfs_prep_iov(r, big, 1, b, fd, 0, CFS_IO_MAX_LEN + 1, NULL), -EINVAL);
	assert_int_equal(cfs_prep_iov(r, big, 1, b + BIG_SIZE - 4, fd, 0, 5, NULL), -EINVAL);
	assert_int_equal(cfs_prep_iov(r, big, 1, b - 1, fd, 0, 5, NULL), -EINVAL);
	assert_int_equal(cfs_prep_iov(r, big, 0, b, fd, 0, 5, NULL), -EINVAL); /* direction */
	/* Full ring. */
	assert_true(cfs_prep_iov(r, big, 1, b, fd, 0, 5, NULL) >= 0);
	assert_true(cfs_prep_iov(r, big, 1, b, d, 0, 5, NULL) >= 0);
	assert_int_equal(cfs_prep_iov(r, big, 1, b, fd, 0, 5, NULL), -EAGAIN);
	struct cfs_cqe c[2];
	cfs_submit_ios(r);
	int got = 0;
	while (got < 2) {
		int n = cfs_wait_for_ios(r, c + got, 2 - got, 1, NULL);
		assert_true(n >= 0);
		got += n;
	}
	assert_int_equal(c[0].result, 5);
	assert_int_equal(c[1].result, 5);
	assert_int_equal(memcmp(b, "hello", 5), 0);
	assert_int_equal(cfs_wait_for_ios(r, c, 0, 0, NULL), -EINVAL);
	/* Daemon-side checks: an unknown buffer id; a buffer range beyond the
	 * real iov (the library trusts the size it is given); past the largest
	 * file; a registration the daemon no longer has. */
	uint8_t fake[16] = {1, 2, 3};
	assert_true(cfs_prep_io(r, fake, b, 4096, 1, b, fd, 0, 5, NULL) >= 0);
	cfs_submit_ios(r);
	assert_int_equal(cfs_wait_for_ios(r, c, 1, 1, NULL), 1);
	assert_int_equal(c[0].result, -EFAULT);
	assert_true(cfs_prep_io(r, cfs_iov_id(big), b, BIG_SIZE * 2, 1, b + BIG_SIZE, fd, 0, 5,
	                        NULL) >= 0);
	cfs_submit_ios(r);
	assert_int_equal(cfs_wait_for_ios(r, c, 1, 1, NULL), 1);
	assert_int_equal(c[0].result, -EFAULT);
	assert_true(cfs_prep_iov(r, big, 1, b, fd, (1ull << 32) * MiB, 5, NULL) >= 0);
	cfs_submit_ios(r);
	assert_int_equal(cfs_wait_for_ios(r, c, 1, 1, NULL), 1);
	assert_int_equal(c[0].result, -EFBIG);
	/* Raw ring: entries the library would never write. */
	struct raw w;
	assert_int_equal(raw_create(&w, 1, 8), 0);
	assert_int_equal(w.h->daemon_state, CFS_RING_SERVING);
	struct cfs_ioc_reg a = {0};
	assert_int_equal(ioctl(fd, CFS_IOC_REG, &a), 0);
	struct cfs_ring_sqe s = {.buf_off = 0, .file_off = 0, .len = 5, .reg = a.reg,
	                         .index = 0, .op = CFS_OP_READ};
	memcpy(s.buf_id, cfs_iov_id(big), 16);
	assert_int_equal(raw_io(&w, &s), 5);
	s.index = 8; /* index out of range */
	assert_int_equal(raw_io(&w, &s), -EINVAL);
	s.index = 1;
	s.op = CFS_OP_WRITE; /* wrong direction for the ring */
	assert_int_equal(raw_io(&w, &s), -EINVAL);
	s.op = 7;
	assert_int_equal(raw_io(&w, &s), -EINVAL);
	s.op = CFS_OP_READ;
	s.reg = a.reg + 1000; /* never issued */
	assert_int_equal(raw_io(&w, &s), -EBADF);
	s.reg = a.reg;
	s.buf_off = BIG_SIZE - 2; /* range outside the iov */
	assert_int_equal(raw_io(&w, &s), -EFAULT);
	s.buf_off = 0;
	s.len = 0;
	assert_int_equal(raw_io(&w, &s), -EINVAL);
	s.len = 5;
	assert_int_equal(ioctl(fd, CFS_IOC_DEREG, &a.reg), 0);
	assert_int_equal(raw_io(&w, &s), -EBADF); /* deregistered */
	assert_int_equal(ioctl(fd, CFS_IOC_DEREG, &a.reg), -1);
	assert_int_equal(errno, ENOENT);
	raw_destroy(&w);
	/* Bad registrations: a name that is not ours, a target outside
	 * /dev/shm, a ring whose header does not match its name. */
	char l[1200];
	snprintf(l, sizeof(l), "%s/3fs-virt/iovs/not-a-ring", env.mnt);
	assert_int_equal(symlink("/dev/shm/x", l), -1);
	assert_int_equal(errno, EINVAL);
	snprintf(l, sizeof(l), "%s/3fs-virt/iovs/00112233445566778899aabbccddeeff", env.mnt);
	assert_int_equal(symlink("/etc/passwd", l), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(symlink("/dev/shm/../../etc/passwd", l), -1);
	assert_int_equal(errno, EINVAL);
	snprintf(l, sizeof(l), "%s/3fs-virt/somefile", env.mnt);
	assert_int_equal(mkdir(l, 0755), -1);
	assert_int_equal(errno, EPERM);
	/* Links are made only in iovs; nothing virtual changes its attributes. */
	assert_int_equal(symlink("/dev/shm/x", l), -1);
	assert_int_equal(errno, EPERM);
	snprintf(l, sizeof(l), "%s/3fs-virt/iovs", env.mnt);
	assert_int_equal(chmod(l, 0700), -1);
	assert_int_equal(errno, EPERM);
	cfs_dereg_fd(fd);
	close(fd);
	close(devnull);
	cfs_ior_destroy(r);
}

/* A read-only registration cannot write; a write-only one cannot read. */
static void test_open_modes(void **state)
{
	char p[1024];
	path_of("modes", p, sizeof(p));
	int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789", 10), 10);
	close(fd);
	int ro = open(p, O_RDONLY), wo = open(p, O_WRONLY);
	assert_true(ro >= 0 && wo >= 0);
	assert_true(cfs_reg_fd(ro, 0) > 0);
	assert_true(cfs_reg_fd(wo, 0) > 0);
	cfs_ior *wr = ring(0, 2, 0), *rr = ring(1, 2, 0);
	char *b = cfs_iov_base(big);
	assert_int_equal(cfs_prep_iov(wr, big, 0, b, ro, 0, 10, NULL), -EACCES);
	assert_int_equal(cfs_prep_iov(rr, big, 1, b, wo, 0, 10, NULL), -EACCES);
	/* The daemon checks too: a raw write entry on the read-only registration. */
	struct raw w;
	assert_int_equal(raw_create(&w, 0, 4), 0);
	struct cfs_ioc_reg a = {0};
	assert_int_equal(ioctl(ro, CFS_IOC_REG, &a), 0);
	assert_int_equal(a.mode, 1u);
	struct cfs_ring_sqe s = {.len = 10, .reg = a.reg, .op = CFS_OP_WRITE};
	memcpy(s.buf_id, cfs_iov_id(big), 16);
	memset(b, 'X', 10);
	assert_int_equal(raw_io(&w, &s), -EACCES);
	raw_destroy(&w);
	char back[11] = {0};
	assert_int_equal(pread(ro, back, 10, 0), 10);
	assert_string_equal(back, "0123456789");
	ioctl(ro, CFS_IOC_DEREG, &a.reg);
	cfs_dereg_fd(ro);
	cfs_dereg_fd(wo);
	close(ro);
	close(wo);
	cfs_ior_destroy(wr);
	cfs_ior_destroy(rr);
}

/* A non-root process cannot read a 0600 root file through a ring, even
 * guessing registration ids of the root process. */
static void test_nonroot(void **state)
{
	if (geteuid() != 0)
		skip();
	char p[1024];
	path_of("secret", p, sizeof(p));
	int fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "TOPSECRET", 9), 9);
	/* Root registers it: a live registration id someone could guess. */
	struct cfs_ioc_reg a = {0};
	assert_int_equal(ioctl(fd, CFS_IOC_REG, &a), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(10);
		if (open(p, O_RDONLY) >= 0 || errno != EACCES)
			_exit(11); /* the kernel says no */
		char mine[1024];
		snprintf(mine, sizeof(mine), "%s/nobody-file", env.mnt);
		/* A buffer of its own, and a raw ring guessing ids 1..a.reg+50. */
		cfs_iov *v;
		if (cfs_iov_create(env.mnt, 4096, 0, -1, &v))
			_exit(12);
		struct raw w;
		if (raw_create(&w, 1, 4))
			_exit(13);
		char *vb = cfs_iov_base(v);
		for (uint32_t g = 1; g < a.reg + 50; g++) {
			struct cfs_ring_sqe s = {.len = 9, .reg = g, .op = CFS_OP_READ};
			memcpy(s.buf_id, cfs_iov_id(v), 16);
			int64_t res = raw_io(&w, &s);
			if (res != -EBADF)
				_exit(14);
			if (memmem(vb, 4096, "TOPSECRET", 9))
				_exit(15);
		}
		/* Root's buffer, addressed by its id, is not ours either. */
		struct cfs_ring_sqe s = {.len = 9, .reg = 1, .op = CFS_OP_READ};
		memcpy(s.buf_id, cfs_iov_id(big), 16);
		if (raw_io(&w, &s) >= 0)
			_exit(16);
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	ioctl(fd, CFS_IOC_DEREG, &a.reg);
	close(fd);
}

static pid_t mount_pid(void)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/pids/mount.pid", env.data);
	FILE *f = fopen(p, "r");
	assert_non_null(f);
	int pid = 0;
	assert_int_equal(fscanf(f, "%d", &pid), 1);
	fclose(f);
	return pid;
}

/* How many lines of the mount's /proc/PID/maps mention NEEDLE. */
static int maps_count(const char *needle)
{
	return testenv_maps_count(mount_pid(), needle);
}

/* kill -9 of a storage service with ring writes in flight: every
 * completion arrives, and every acknowledged write is intact once the
 * service is back and its targets resynced. */
static void test_storage_killed(void **state)
{
	enum { NW = 48, DEPTH = 16 };
	char p[1024], pidf[700];
	path_of("storage-kill", p, sizeof(p));
	int fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_true(cfs_reg_fd(fd, 0) > 0);
	cfs_ior *r = ring(0, DEPTH, 0);
	char *b = cfs_iov_base(big);
	for (int i = 0; i < NW; i++)
		for (uint64_t k = 0; k < MiB; k++)
			b[(uint64_t)i * MiB + k] = (char)pat(k, (unsigned)i + 1000);
	int64_t res[NW];
	int next = 0, done = 0, inflight = 0, killed = 0;
	uint64_t deadline = clock_mono_ms() + 180000;
	while (done < NW) {
		while (inflight < DEPTH && next < NW) {
			int idx = cfs_prep_iov(r, big, 0, b + (uint64_t)next * MiB, fd,
			                       (uint64_t)next * MiB, MiB, (void *)(uintptr_t)next);
			assert_true(idx >= 0);
			next++;
			inflight++;
		}
		cfs_submit_ios(r);
		if (!killed && done >= 4) {
			snprintf(pidf, sizeof(pidf), "%s/pids/storage2.pid", env.data);
			FILE *f = fopen(pidf, "r");
			assert_non_null(f);
			int spid = 0;
			assert_int_equal(fscanf(f, "%d", &spid), 1);
			fclose(f);
			assert_int_equal(kill(spid, SIGKILL), 0); /* mid-batch */
			killed = 1;
		}
		struct cfs_cqe c[DEPTH];
		struct timespec t;
		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_sec += 1;
		int n = cfs_wait_for_ios(r, c, DEPTH, 1, &t);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			res[(uintptr_t)c[i].userdata] = c[i].result;
			done++;
			inflight--;
		}
		if (clock_mono_ms() > deadline)
			fail_msg("completions missing 180 s after the kill: %d of %d", done, NW);
	}
	int acked = 0;
	for (int i = 0; i < NW; i++) {
		assert_true(res[i] == (int64_t)MiB || res[i] < 0);
		acked += res[i] == (int64_t)MiB;
	}
	assert_true(acked > 0);
	assert_true(killed);
	fprintf(stderr, "storage kill: %d of %d ring writes acknowledged, the rest failed\n", acked,
	        NW);
	cfs_dereg_fd(fd);
	close(fd);
	cfs_ior_destroy(r);
	/* Bring the service back and wait for the resync. */
	integ_up_serving(&env, "up-again", 120000);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	unsigned char *chk = malloc(MiB);
	assert_non_null(chk);
	for (int i = 0; i < NW; i++) {
		if (res[i] != (int64_t)MiB)
			continue;
		assert_int_equal(pread(fd, chk, MiB, (off_t)((uint64_t)i * MiB)), (ssize_t)MiB);
		for (uint64_t k = 0; k < MiB; k++)
			if (chk[k] != pat(k, (unsigned)i + 1000))
				fail_msg("acknowledged write %d lost at byte %llu", i, (unsigned long long)k);
	}
	free(chk);
	close(fd);
}

/* Mappings of NEEDLE in the three storage services. */
static int storage_maps_count(const char *needle)
{
	int n = 0;
	for (int i = 1; i <= 3; i++) {
		char role[16];
		snprintf(role, sizeof(role), "storage%d", i);
		n += testenv_maps_count(integ_role_pid(&env, role), needle);
	}
	return n;
}

/* Zero copy (docs/usrbio.md): a memfd iov is handed to the same-host
 * storage services, ring writes and reads through it round-trip, and
 * destroying it makes every service unmap it (SHM_UNREG), so no late
 * request can land in memory that is gone. */
static void test_zero_copy(void **state)
{
	enum { SZ = 8 << 20 };
	cfs_iov *v;
	assert_int_equal(cfs_iov_create(env.mnt, SZ, 0, -1, &v), 0);
	char hex[33];
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", cfs_iov_id(v)[i]);
	char p[1024];
	path_of("zero-copy", p, sizeof(p));
	int fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_true(cfs_reg_fd(fd, 0) > 0);
	cfs_ior *rr = ring(1, 8, 0), *wr = ring(0, 8, 0);
	char *b = cfs_iov_base(v);
	unsigned char *chk = malloc(SZ);
	assert_non_null(chk);
	/* Writes of 4 MiB in pieces of every size from unaligned places. */
	static const uint64_t lens[] = {1, 4095, 65536, 262144 + 3, MiB, MiB + 4096 * 3 - 7};
	uint64_t off = 0;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t boff = (i * 12289) % (SZ / 2);
		for (uint64_t k = 0; k < lens[i]; k++)
			b[boff + k] = (char)pat(off + k, 77);
		int idx = cfs_prep_iov(wr, v, 0, b + boff, fd, off, lens[i], NULL);
		assert_true(idx >= 0);
		assert_int_equal(cfs_submit_ios(wr), 0);
		struct cfs_cqe c;
		assert_int_equal(cfs_wait_for_ios(wr, &c, 1, 1, NULL), 1);
		assert_int_equal(c.result, (int64_t)lens[i]);
		off += lens[i];
	}
	/* Read it all back: one batch of 1 MiB reads (pieces on every
	 * service), into the other half of the buffer. */
	memset(b + SZ / 2, 0xee, SZ / 2);
	int n = (int)((off + MiB - 1) / MiB);
	for (int i = 0; i < n; i++)
		assert_true(cfs_prep_iov(rr, v, 1, b + SZ / 2 + (uint64_t)i * MiB, fd,
					 (uint64_t)i * MiB, MiB, NULL) >= 0);
	assert_int_equal(cfs_submit_ios(rr), 0);
	struct cfs_cqe c[8];
	int got = 0;
	int64_t total = 0;
	while (got < n) {
		int k = cfs_wait_for_ios(rr, c, 8, 1, NULL);
		for (int j = 0; j < k; j++)
			total += c[j].result;
		got += k;
	}
	assert_int_equal(total, (int64_t)off);
	for (uint64_t k = 0; k < off; k++)
		if ((unsigned char)b[SZ / 2 + k] != pat(k, 77))
			fail_msg("zero-copy read: byte %llu differs", (unsigned long long)k);
	assert_int_equal(pread(fd, chk, off, 0), (ssize_t)off);
	assert_memory_equal(chk, b + SZ / 2, off);
	/* The services map the application's memfd... */
	assert_true(storage_maps_count(hex) >= 1);
	cfs_ior_destroy(rr);
	cfs_ior_destroy(wr);
	cfs_iov_destroy(v);
	/* ...until it is destroyed. */
	int m = -1;
	for (int i = 0; i < 100 && m != 0; i++) {
		m = storage_maps_count(hex);
		if (m)
			usleep(100000);
	}
	assert_int_equal(m, 0);
	free(chk);
	cfs_dereg_fd(fd);
	close(fd);
}

/* A write carrying its bytes' CRC32C (CFS_OP_F_CRC, what KVCache puts
 * send): the mount makes no pass over the buffer and storage writes only
 * bytes that match the CRC, so a wrong one fails the write (-EIO, at once:
 * no retries) and leaves the file as it was. */
static void test_write_crc(void **state)
{
	enum { LEN = 256 << 10 };
	char p[1024];
	path_of("write-crc", p, sizeof(p));
	int fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_true(cfs_reg_fd(fd, 0) > 0);
	cfs_ior *wr = ring(0, 8, 0);
	assert_int_equal(cfs_ior_write_crc(wr), 1);
	char *b = cfs_iov_base(big);
	for (uint64_t k = 0; k < LEN; k++)
		b[k] = (char)pat(k, 31);
	uint32_t crc = crc32c(0, b, LEN);
	/* One chunk piece (chunks are 1 MiB): the CRC goes to storage. */
	struct cfs_cqe c;
	int idx = cfs_prep_write_crc(wr, big, b, fd, MiB, LEN, crc, NULL);
	assert_true(idx >= 0);
	assert_int_equal(cfs_submit_ios(wr), 0);
	assert_int_equal(cfs_wait_for_ios(wr, &c, 1, 1, NULL), 1);
	assert_int_equal(c.result, LEN);
	/* Other bytes with the old CRC: refused, nothing written. */
	for (uint64_t k = 0; k < LEN; k++)
		b[LEN + k] = (char)pat(k, 32);
	idx = cfs_prep_write_crc(wr, big, b + LEN, fd, MiB, LEN, crc, NULL);
	assert_true(idx >= 0);
	assert_int_equal(cfs_submit_ios(wr), 0);
	assert_int_equal(cfs_wait_for_ios(wr, &c, 1, 1, NULL), 1);
	assert_int_equal(c.result, -EIO);
	char *chk = malloc(LEN);
	assert_non_null(chk);
	assert_int_equal(pread(fd, chk, LEN, MiB), LEN);
	assert_memory_equal(chk, b, LEN);
	free(chk);
	cfs_ior_destroy(wr);
	cfs_dereg_fd(fd);
	close(fd);
}

/* kill -9 of an application with I/Os in flight: the daemon survives and
 * unmaps the application's memory. */
static void test_app_killed(void **state)
{
	char p[1024];
	path_of("rt-fuse-7", p, sizeof(p)); /* 64 MiB from the round trip */
	int before = maps_count("raw-ring-") + maps_count("chainfs-i");
	if (getenv("UB_DEBUG")) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "grep -e raw-ring -e chainfs-i /proc/%d/maps >&2", (int)mount_pid());
		if (system(cmd)) {
		}
	}
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		cfs_iov *v;
		cfs_ior *r;
		struct cfs_ior_opts o = {.entries = 64, .for_read = 1};
		int fd = open(p, O_RDONLY);
		if (fd < 0 || cfs_iov_create(env.mnt, 64 << 20, 0, -1, &v) ||
		    cfs_ior_create(env.mnt, &o, &r) || cfs_reg_fd(fd, 0) < 0)
			_exit(1);
		for (int round = 0;; round++) {
			for (int i = 0; i < 64; i++)
				cfs_prep_iov(r, v, 1, (char *)cfs_iov_base(v) + ((size_t)i << 20), fd,
				             (uint64_t)i << 20, 1 << 20, NULL);
			cfs_submit_ios(r);
			char hex[33];
			for (int i = 0; i < 16; i++)
				snprintf(hex + 2 * i, 3, "%02x", cfs_iov_id(v)[i]);
			if (round == 0 && write(pfd[1], hex, 32) != 32)
				_exit(2);
			struct cfs_cqe c[64];
			int got = 0;
			while (got < 64)
				got += cfs_wait_for_ios(r, c, 64, 1, NULL);
		}
	}
	close(pfd[1]);
	char hex[33] = {0};
	assert_int_equal(read(pfd[0], hex, 32), 32);
	close(pfd[0]);
	usleep(20000); /* mid-batch */
	assert_int_equal(maps_count(hex), 1); /* the daemon maps the child's buffer */
	kill(pid, SIGKILL);
	int st;
	waitpid(pid, &st, 0);
	int n = -1;
	for (int i = 0; i < 100 && n != 0; i++) {
		usleep(100000);
		n = maps_count(hex);
	}
	assert_int_equal(n, 0); /* released once the process is gone */
	char shm[128];
	snprintf(shm, sizeof(shm), "/dev/shm/chainfs-iov-%s", hex);
	assert_int_equal(access(shm, F_OK), -1); /* and its name with it: no tmpfs leak */
	/* The ring is unmapped on its own last reference, which can come a
	 * little after the buffer's (the reaper's pass, the batch finishing
	 * its completions): wait for it too, bounded. */
	int after = maps_count("raw-ring-") + maps_count("chainfs-i");
	for (int i = 0; i < 50 && after > before; i++) {
		usleep(100000);
		after = maps_count("raw-ring-") + maps_count("chainfs-i");
	}
	if (after > before)
		fail_msg("daemon mappings grew from %d to %d", before, after);
	struct stat st2;
	assert_int_equal(stat(p, &st2), 0); /* the mount still answers */
	assert_int_equal(kill(mount_pid(), 0), 0);
}

/* The application shrinks its buffer under the daemon: SIGBUS is absorbed,
 * the I/O fails with -EFAULT and the daemon lives. */
static void test_truncated_buffer(void **state)
{
	char p[1024];
	path_of("rt-fuse-6", p, sizeof(p));
	int fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_true(cfs_reg_fd(fd, 0) > 0);
	cfs_iov *v;
	/* A memfd iov (the default) is sealed: it cannot shrink. */
	assert_int_equal(cfs_iov_create(env.mnt, 4 << 20, 0, -1, &v), 0);
	char hex[33], name[128], link[1024], target[256];
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", cfs_iov_id(v)[i]);
	snprintf(link, sizeof(link), "%s/3fs-virt/iovs/%s", env.mnt, hex);
	ssize_t tn = readlink(link, target, sizeof(target) - 1);
	assert_true(tn > 0);
	target[tn] = 0;
	assert_int_equal(strncmp(target, "/proc/", 6), 0);
	int mfd = open(target, O_RDWR);
	assert_true(mfd >= 0);
	assert_int_equal(ftruncate(mfd, 0), -1);
	assert_int_equal(errno, EPERM);
	close(mfd);
	cfs_iov_destroy(v);
	/* A /dev/shm one can. */
	setenv("CFS_IOV_DEVSHM", "1", 1);
	assert_int_equal(cfs_iov_create(env.mnt, 4 << 20, 0, -1, &v), 0);
	unsetenv("CFS_IOV_DEVSHM");
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", cfs_iov_id(v)[i]);
	snprintf(name, sizeof(name), "/dev/shm/chainfs-iov-%s", hex);
	int sfd = open(name, O_RDWR);
	assert_true(sfd >= 0);
	assert_int_equal(ftruncate(sfd, 0), 0);
	close(sfd);
	cfs_ior *r = ring(1, 2, 0);
	int idx = cfs_prep_iov(r, v, 1, cfs_iov_base(v), fd, 0, 1 << 20, NULL);
	assert_true(idx >= 0);
	cfs_submit_ios(r);
	struct cfs_cqe c;
	assert_int_equal(cfs_wait_for_ios(r, &c, 1, 1, NULL), 1);
	assert_int_equal(c.result, -EFAULT);
	assert_int_equal(kill(mount_pid(), 0), 0);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	cfs_ior_destroy(r);
	/* The local mapping is dead too (a touch would SIGBUS here); destroy
	 * only unmaps it. */
	cfs_iov_destroy(v);
	cfs_dereg_fd(fd);
	close(fd);
}

static void test_hf3fs_compat(void **state)
{
	char bin[1024], dir[1024];
	snprintf(bin, sizeof(bin), "%s/tests/usrbio/hf3fs_compat", getenv("CFS_BUILD"));
	path_of("compat", dir, sizeof(dir));
	assert_int_equal(mkdir(dir, 0755), 0);
	char *argv[] = {bin, dir, NULL};
	assert_int_equal(integ_run(argv, NULL, NULL, 120000), 0);
}

/* examples/cat_usrbio prints a file byte for byte. */
static void test_cat_example(void **state)
{
	char bin[1024], src[1024], out[1024];
	snprintf(bin, sizeof(bin), "%s/examples/cat_usrbio", getenv("CFS_BUILD"));
	path_of("rt-fuse-7", src, sizeof(src)); /* 66 MiB with a leading hole: 3 rounds of 8 x 4 MiB */
	snprintf(out, sizeof(out), "%s/cat.out", env.dir);
	char *argv[] = {bin, src, NULL};
	assert_int_equal(integ_run(argv, NULL, out, 120000), 0);
	struct stat a, b;
	assert_int_equal(stat(src, &a), 0);
	assert_int_equal(stat(out, &b), 0);
	assert_int_equal(a.st_size, b.st_size);
	assert_true(integ_file_crc(src) >= 0);
	assert_int_equal(integ_file_crc(src), integ_file_crc(out));
	unlink(out);
}

/* Many rings and processes at once: each reads its own file. */
static void test_parallel_procs(void **state)
{
	pid_t kids[4];
	for (int k = 0; k < 4; k++) {
		kids[k] = fork();
		assert_true(kids[k] >= 0);
		if (kids[k] == 0) {
			char p[1024];
			snprintf(p, sizeof(p), "%s/rt-fuse-%d", env.mnt, 4 + k % 3);
			int fd = open(p, O_RDONLY);
			cfs_iov *v;
			cfs_ior *r[2];
			struct cfs_ior_opts o = {.entries = 16, .for_read = 1, .io_depth = -4,
			                         .timeout_ms = 1};
			if (fd < 0 || cfs_iov_create(env.mnt, 1 << 20, 0, -1, &v) ||
			    cfs_ior_create(env.mnt, &o, &r[0]) || cfs_ior_create(env.mnt, &o, &r[1]) ||
			    cfs_reg_fd(fd, 0) < 0)
				_exit(1);
			for (int round = 0; round < 20; round++)
				for (int q = 0; q < 2; q++) {
					for (int i = 0; i < 16; i++)
						if (cfs_prep_iov(r[q], v, 1, (char *)cfs_iov_base(v) + i * 4096,
						                 fd, (uint64_t)(i * 7919 % 256) * 4096, 4096,
						                 NULL) < 0)
							_exit(2);
					cfs_submit_ios(r[q]);
					struct cfs_cqe c[16];
					int got = 0;
					while (got < 16) {
						int n = cfs_wait_for_ios(r[q], c, 16, 1, NULL);
						if (n < 0)
							_exit(3);
						for (int j = 0; j < n; j++)
							if (c[j].result != 4096)
								_exit(4);
						got += n;
					}
				}
			_exit(0);
		}
	}
	for (int k = 0; k < 4; k++) {
		int st;
		assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
}

/* The mount dies while an application waits: -ENOTCONN, not a hang; the
 * restarted mount serves new rings. */
static void test_mount_killed(void **state)
{
	/* io_depth 4 with one I/O prepared: the daemon holds it. */
	struct cfs_ior_opts o = {.entries = 8, .for_read = 1, .io_depth = 4};
	cfs_ior *r;
	assert_int_equal(cfs_ior_create(env.mnt, &o, &r), 0);
	char p[1024];
	path_of("rt-fuse-1", p, sizeof(p));
	int fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_true(cfs_reg_fd(fd, 0) > 0);
	assert_true(cfs_prep_iov(r, big, 1, cfs_iov_base(big), fd, 0, 10, NULL) >= 0);
	cfs_submit_ios(r);
	struct cfs_cqe c;
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_sec += 1;
	assert_int_equal(cfs_wait_for_ios(r, &c, 1, 1, &t), 0); /* held: io_depth */
	assert_int_equal(kill(mount_pid(), SIGKILL), 0);
	clock_gettime(CLOCK_REALTIME, &t);
	time_t start = t.tv_sec;
	assert_int_equal(cfs_wait_for_ios(r, &c, 1, 1, NULL), -ENOTCONN);
	clock_gettime(CLOCK_REALTIME, &t);
	assert_true(t.tv_sec - start < 5);
	assert_int_equal(cfs_prep_iov(r, big, 1, cfs_iov_base(big), fd, 0, 10, NULL), -ENOTCONN);
	assert_int_equal(cfs_submit_ios(r), -ENOTCONN);
	cfs_ior_destroy(r);
	/* A new ring on the dead mount fails cleanly too. */
	assert_true(cfs_ior_create(env.mnt, &o, &r) < 0);
	cfs_dereg_fd(fd); /* the daemon is gone: only the library's entry goes */
	close(fd);
	cfs_iov_destroy(big);
	big = NULL;
	/* Restart the mount (`up` starts what is missing) and make new rings. */
	char *umnt[] = {"fusermount3", "-uz", env.mnt, NULL};
	assert_int_equal(integ_run(umnt, NULL, NULL, 30000), 0);
	char uplog[700];
	snprintf(uplog, sizeof(uplog), "%s/up-remount.out", env.dir);
	char *up[] = {(char *)testenv_chainfs(), "up", "--dir", env.data, "--mount", env.mnt, NULL};
	assert_int_equal(integ_run(up, NULL, uplog, 120000), 0);
	assert_int_equal(cfs_iov_create(env.mnt, 1 << 20, 0, -1, &big), 0);
	struct cfs_ior_opts o2 = {.entries = 4, .for_read = 1};
	assert_int_equal(cfs_ior_create(env.mnt, &o2, &r), 0);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_true(cfs_reg_fd(fd, 0) > 0);
	unsigned char want[4096];
	assert_int_equal(pread(fd, want, sizeof(want), 0), (ssize_t)sizeof(want));
	assert_int_equal(one_io(r, 1, cfs_iov_base(big), fd, 0, sizeof(want)), (int64_t)sizeof(want));
	assert_int_equal(memcmp(cfs_iov_base(big), want, sizeof(want)), 0);
	cfs_dereg_fd(fd);
	close(fd);
	cfs_ior_destroy(r);
	cfs_iov_destroy(big);
	big = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_idle_watcher),
	    cmocka_unit_test(test_setup_buffers),    cmocka_unit_test(test_inline_file_ring),
	    cmocka_unit_test(test_roundtrip_sizes),  cmocka_unit_test(test_holes_and_eof),
	    cmocka_unit_test(test_bad_inputs),       cmocka_unit_test(test_open_modes),
	    cmocka_unit_test(test_nonroot),          cmocka_unit_test(test_hf3fs_compat),
	    cmocka_unit_test(test_cat_example),      cmocka_unit_test(test_parallel_procs),
	    cmocka_unit_test(test_zero_copy),        cmocka_unit_test(test_write_crc),
	    cmocka_unit_test(test_storage_killed),   cmocka_unit_test(test_app_killed),
	    cmocka_unit_test(test_truncated_buffer), cmocka_unit_test(test_mount_killed),
	};
	return integ_main(&env, "usrbio", tests, sizeof(tests) / sizeof(tests[0]));
}
