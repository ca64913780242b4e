/* cat_usrbio.c - cat(1) through a ChainFS ring: FILE's bytes to stdout.
 * Build: cc cat_usrbio.c $(pkg-config --cflags --libs chainfs) */
#include <chainfs.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BLK (4 << 20)
#define DEPTH 8

int main(int argc, char **argv)
{
	char mp[256];
	cfs_iov *iov;
	cfs_ior *ior;
	struct cfs_ior_opts o = {.entries = DEPTH, .for_read = 1};
	int fd = argc == 2 ? open(argv[1], O_RDONLY) : -1, rc;
	if (fd < 0 || cfs_extract_mount_point(mp, sizeof(mp), argv[1]) < 0)
		return fprintf(stderr, "usage: cat_usrbio FILE-ON-A-CHAINFS-MOUNT\n"), 2;
	if ((rc = cfs_iov_create(mp, (size_t)BLK * DEPTH, 0, -1, &iov)) < 0 ||
	    (rc = cfs_ior_create(mp, &o, &ior)) < 0 || (rc = cfs_reg_fd(fd, 0)) < 0)
		return fprintf(stderr, "cat_usrbio: %s\n", strerror(-rc)), 1;
	char *base = cfs_iov_base(iov);
	for (uint64_t off = 0;; off += (uint64_t)BLK * DEPTH) {
		struct cfs_cqe c[DEPTH];
		for (int i = 0; i < DEPTH; i++) /* userdata = buffer slot */
			cfs_prep_iov(ior, iov, 1, base + (size_t)i * BLK, fd, off + (uint64_t)i * BLK,
			             BLK, (void *)(uintptr_t)i);
		cfs_submit_ios(ior);
		int n = cfs_wait_for_ios(ior, c, DEPTH, DEPTH, NULL), more = n == DEPTH;
		for (int i = 0; i < DEPTH && n == DEPTH; i++) { /* completions come in any order */
			struct cfs_cqe *e = NULL;
			for (int j = 0; j < n; j++)
				if ((uintptr_t)c[j].userdata == (uintptr_t)i)
					e = &c[j];
			if (e->result < 0)
				return fprintf(stderr, "cat_usrbio: %s\n", strerror((int)-e->result)), 1;
			if (more && fwrite(base + (size_t)i * BLK, 1, (size_t)e->result, stdout) != (size_t)e->result)
				return 1;
			more = more && e->result == BLK;
		}
		if (n != DEPTH || !more)
			break;
	}
	cfs_dereg_fd(fd);
	cfs_ior_destroy(ior);
	cfs_iov_destroy(iov);
	return 0;
}
