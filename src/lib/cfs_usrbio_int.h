/* cfs_usrbio_int.h - libchainfs internals shared between its modules (not
 * exported: libchainfs.map lists the public symbols). */
#ifndef CFS_LIB_CFS_USRBIO_INT_H
#define CFS_LIB_CFS_USRBIO_INT_H

#include <stdint.h>
#include <time.h>

#include "chainfs.h"

/* What a read's completion says about its bytes (ring_abi.h
 * CFS_RING_CQE_F_CRC): OK != 0 when CRC is the CRC32C of the RESULT bytes
 * the daemon placed in the iov. */
struct cfs_cqe_crc {
	uint32_t crc;
	int ok;
};

/* cfs_wait_for_ios, plus CRCS[i] for CQES[i] when CRCS is not NULL. */
int cfs_wait_for_ios_crc(cfs_ior *r, struct cfs_cqe *cqes, struct cfs_cqe_crc *crcs, int n,
                         int min_results, const struct timespec *abs_timeout);

/* cfs_prep_iov of a write whose LEN bytes at PTR have CRC32C CRC: when
 * the daemon takes it (cfs_ior_write_crc), it sends CRC with the write
 * instead of computing its own, and storage refuses bytes that do not
 * match it (the write completes with -EIO); with an older daemon the CRC
 * is not sent. Same returns and thread rules as cfs_prep_iov. */
int cfs_prep_write_crc(cfs_ior *r, const cfs_iov *v, void *ptr, int fd, uint64_t off, uint64_t len,
                       uint32_t crc, const void *userdata);
/* 1 when ring R's daemon takes a write's CRC (CFS_RING_FEAT_WRITE_CRC). */
int cfs_ior_write_crc(const cfs_ior *r);

#endif
