/* hf3fs_compat.c - a program written only against hf3fs_usrbio.h, the way
 * 3FS's UsrbIo.md shows it, run by test_integ_usrbio against a real mount:
 *
 *   hf3fs_compat DIR     (DIR on a ChainFS mount)
 *
 * It writes a file through FUSE and reads it back through a read ring
 * (one 1 MiB I/O per slot, and a sub-block at an odd offset), writes a
 * second file through a write ring and reads it back through FUSE, and
 * checks the 3FS return conventions (hf3fs_reg_fd <= 0 / positive errno,
 * -EAGAIN on a full ring, -EINVAL on a wrong direction). Exit 0 on
 * success; prints what failed otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <hf3fs_usrbio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NUM_IOS 8
#define BLOCK (1 << 20)

#define CHECK(c)                                                                   \
	do {                                                                       \
		if (!(c)) {                                                        \
			fprintf(stderr, "hf3fs_compat: %s:%d: check failed: %s\n", \
			        __FILE__, __LINE__, #c);                           \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

static unsigned char pattern(size_t i)
{
	return (unsigned char)(i * 131 + (i >> 12) * 7 + 1);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: hf3fs_compat DIR-ON-A-CHAINFS-MOUNT\n");
		return 2;
	}
	char mp[256], a[1024], b[1024];
	int mpl = hf3fs_extract_mount_point(mp, sizeof(mp), argv[1]);
	CHECK(mpl > 1 && mpl <= (int)sizeof(mp));
	CHECK(hf3fs_extract_mount_point(mp, sizeof(mp), "/proc") == -1);
	snprintf(a, sizeof(a), "%s/compat-a", argv[1]);
	snprintf(b, sizeof(b), "%s/compat-b", argv[1]);

	/* The file through FUSE. */
	size_t total = (size_t)NUM_IOS * BLOCK;
	unsigned char *data = malloc(total);
	CHECK(data);
	for (size_t i = 0; i < total; i++)
		data[i] = pattern(i);
	int wfd = open(a, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	CHECK(wfd >= 0);
	CHECK(write(wfd, data, total) == (ssize_t)total);
	CHECK(close(wfd) == 0);

	struct hf3fs_ior ior;
	CHECK(hf3fs_iorcreate4(&ior, mp, NUM_IOS, true, 0, 0, -1, 0) == 0);
	CHECK(hf3fs_io_entries(&ior) == NUM_IOS);
	CHECK(hf3fs_ior_size(NUM_IOS) > 0);
	struct hf3fs_iov iov;
	CHECK(hf3fs_iovcreate(&iov, mp, total, 0, -1) == 0);
	CHECK(iov.base && iov.size == total && !strcmp(iov.mount_point, mp));

	int fd = open(a, O_RDONLY);
	CHECK(fd >= 0);
	CHECK(hf3fs_is_hf3fs(fd));
	int rfd = hf3fs_reg_fd(fd, 0);
	CHECK(rfd <= 0);
	CHECK(hf3fs_reg_fd(fd, 0) == EINVAL); /* twice: a positive errno */
	CHECK(hf3fs_reg_fd(0, 0) > 0);        /* stdin is not on the mount */

	for (int i = 0; i < NUM_IOS; i++)
		CHECK(hf3fs_prep_io(&ior, &iov, true, iov.base + (size_t)i * BLOCK,
		                    i % 2 ? fd : rfd, (size_t)i * BLOCK, BLOCK,
		                    (void *)(long)(i + 100)) >= 0);
	/* Full ring; wrong direction. */
	CHECK(hf3fs_prep_io(&ior, &iov, true, iov.base, fd, 0, 1, NULL) == -EAGAIN);
	CHECK(hf3fs_prep_io(&ior, &iov, false, iov.base, fd, 0, 1, NULL) == -EINVAL);
	CHECK(hf3fs_submit_ios(&ior) == 0);
	struct hf3fs_cqe cqes[NUM_IOS];
	int got = 0;
	while (got < NUM_IOS) {
		int n = hf3fs_wait_for_ios(&ior, cqes + got, NUM_IOS - got, NUM_IOS - got, NULL);
		CHECK(n >= 0);
		got += n;
	}
	int seen[NUM_IOS] = {0};
	for (int i = 0; i < NUM_IOS; i++) {
		long u = (long)cqes[i].userdata - 100;
		CHECK(u >= 0 && u < NUM_IOS && !seen[u]);
		seen[u] = 1;
		CHECK(cqes[i].index >= 0 && cqes[i].index < NUM_IOS);
		CHECK(cqes[i].result == BLOCK);
	}
	CHECK(memcmp(iov.base, data, total) == 0);
	/* An odd range past the end: a short result. */
	CHECK(hf3fs_prep_io(&ior, &iov, true, iov.base + 3, fd, total - 1000, 5000, NULL) >= 0);
	CHECK(hf3fs_submit_ios(&ior) == 0);
	CHECK(hf3fs_wait_for_ios(&ior, cqes, 1, 1, NULL) == 1);
	CHECK(cqes[0].result == 1000);
	CHECK(memcmp(iov.base + 3, data + total - 1000, 1000) == 0);
	hf3fs_dereg_fd(fd);
	CHECK(hf3fs_prep_io(&ior, &iov, true, iov.base, fd, 0, 1, NULL) == -EBADF);
	close(fd);
	hf3fs_iordestroy(&ior);

	/* Through a write ring, back through FUSE. */
	struct hf3fs_ior wior;
	CHECK(hf3fs_iorcreate4(&wior, mp, NUM_IOS, false, 0, 0, -1, 0) == 0);
	int bfd = open(b, O_CREAT | O_TRUNC | O_RDWR, 0644);
	CHECK(bfd >= 0);
	CHECK(hf3fs_reg_fd(bfd, 0) <= 0);
	for (size_t i = 0; i < total; i++)
		iov.base[i] = (uint8_t)~pattern(i);
	for (int i = 0; i < NUM_IOS; i++)
		CHECK(hf3fs_prep_io(&wior, &iov, false, iov.base + (size_t)i * BLOCK, bfd,
		                    (size_t)i * BLOCK, BLOCK, NULL) >= 0);
	CHECK(hf3fs_submit_ios(&wior) == 0);
	got = 0;
	while (got < NUM_IOS) {
		int n = hf3fs_wait_for_ios(&wior, cqes, NUM_IOS, 1, NULL);
		CHECK(n >= 0);
		for (int i = 0; i < n; i++)
			CHECK(cqes[i].result == BLOCK);
		got += n;
	}
	hf3fs_dereg_fd(bfd);
	close(bfd);
	hf3fs_iordestroy(&wior);
	int cfd = open(b, O_RDONLY);
	CHECK(cfd >= 0);
	CHECK(lseek(cfd, 0, SEEK_END) == (off_t)total);
	CHECK(pread(cfd, data, total, 0) == (ssize_t)total);
	for (size_t i = 0; i < total; i++)
		CHECK(data[i] == (uint8_t)~pattern(i));
	close(cfd);
	hf3fs_iovdestroy(&iov);
	free(data);
	printf("hf3fs_compat: ok\n");
	return 0;
}
