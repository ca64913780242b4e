/* ring_decode.h - decoding what an application writes into the daemon's
 * view: ring submission entries and registration symlink names. Both are
 * bytes an untrusted process controls, so both are fuzzed
 * (tests/fuzz/fuzz_usrbio_ring.c). Pure functions; any thread.
 */
#ifndef CFS_USRBIO_RING_DECODE_H
#define CFS_USRBIO_RING_DECODE_H

#include <stddef.h>
#include <stdint.h>

/* One submission entry, copied out of shared memory. */
struct usrbio_sqe {
	uint8_t buf_id[16];
	uint64_t buf_off, file_off, len, userdata;
	uint32_t reg, index, op; /* op without CFS_OP_F_CRC */
	uint32_t crc;            /* with has_crc: CRC32C of the write's bytes */
	int has_crc;
};

/* Copies the SQE at RAW (sizeof(struct cfs_ring_sqe) bytes, read once) into
 * OUT and checks what needs no table: index < ENTRIES, op is FOR_READ's
 * direction, len in 1..CFS_IO_MAX_LEN, the file range does not overflow.
 * OUT is filled even on failure (the completion echoes index and
 * userdata). Returns 0 or the completion's -errno: -EINVAL (index, op,
 * direction, length, reserved field set without CFS_OP_F_CRC, that flag
 * on a read), -EFBIG (file range overflows). */
int usrbio_decode_sqe(const void *raw, uint32_t entries, int for_read, struct usrbio_sqe *out);

/* 0 when [BUF_OFF, BUF_OFF+LEN) lies inside an iov of IOV_SIZE bytes, else
 * -EFAULT. */
int usrbio_check_range(uint64_t iov_size, uint64_t buf_off, uint64_t len);

/* A registration symlink's name: <32 hex>[.b<n>][.r<d>|.w<d>][.ph|.pl]
 * [.t<ms>][.f<binary>] (3FS's format; see ring_abi.h). */
struct usrbio_name {
	uint8_t id[16];
	uint64_t block_size;
	int is_ring;
	int for_read;
	int io_depth;
	int priority;        /* -1 high, 0 normal, 1 low */
	uint32_t timeout_ms;
	uint64_t flags;
};

/* 0, or -EINVAL for anything else (unknown suffix, bad numbers, repeats). */
int usrbio_parse_name(const char *name, struct usrbio_name *out);

#endif
