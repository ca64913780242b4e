/* ring_abi.h - the shared-memory and ioctl contract between libchainfs (in
 * the application) and the mount daemon (src/usrbio). Internal: neither
 * chainfs.h nor hf3fs_usrbio.h exposes it, but both sides compile against
 * this one file, so the layout cannot drift. Every offset is pinned below.
 *
 * A RING is one shared-memory file of cfs_ring_bytes(entries) bytes:
 *
 *   OFFSET               SIZE          WHAT
 *   0                    4096          struct cfs_ring_hdr
 *   4096                 64 * entries  struct cfs_ring_sqe[entries]  (app -> daemon)
 *   4096 + 64 * entries  32 * entries  struct cfs_ring_cqe[entries]  (daemon -> app)
 *
 * Counters are free-running uint32 values; position = counter % entries.
 * The application owns sq_tail and cq_tail, the daemon sq_head and cq_head.
 * The daemon keeps private copies of the counters it owns and of the ring's
 * parameters (entries, direction, io_depth, timeout, flags: taken from the
 * registration name and the file size, not from this header), so an
 * application scribbling on the header can only confuse itself. Each SQE
 * carries the slot index the library allocated (0..entries-1); at most
 * `entries` I/Os are in flight, so neither queue can overflow for a
 * well-behaved application, and the daemon takes no SQE while the
 * completions it posted and the I/Os it holds already fill the CQ.
 *
 * VIRTUAL DIRECTORY. <mount>/3fs-virt/iovs (hidden: not listed in the root)
 *   symlink(/dev/shm/NAME, iovs/<32 hex id>[.b<bs>])            registers an iov
 *   symlink(/dev/shm/NAME, iovs/<id>.r<d>|.w<d>[.ph|.pl][.t<ms>][.f<binary>])
 *                                                                registers a ring
 *   unlink(iovs/<that name>)                                     deregisters
 *   readlink(iovs/submit-ios) -> /dev/shm/sem.NAME               the submit semaphore
 * These names are 3FS's, so 3FS programs and Python code that make the
 * symlinks themselves work unchanged.
 *
 * IOCTLS on a file of the mount (restricted FUSE ioctls, sizes from _IOC):
 *   CFS_IOC_GET_MAGIC  -> CFS_SUPER_MAGIC
 *   CFS_IOC_REG        registers the file (the daemon knows the inode and the
 *                      open mode from the kernel's file handle, the caller's
 *                      uid/gids from the request) for the calling process;
 *                      returns the registration id the SQEs carry.
 *   CFS_IOC_DEREG      drops a registration id of the calling process.
 */
#ifndef CFS_USRBIO_RING_ABI_H
#define CFS_USRBIO_RING_ABI_H

#include <assert.h>
#include <semaphore.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

#define CFS_RING_MAGIC     0x52534643u /* "CFSR" */
#define CFS_RING_VERSION   1u
#define CFS_RING_HDR_BYTES 4096u
#define CFS_RING_MAX_ENTRIES 65536
#define CFS_SUPER_MAGIC    0x43465331u /* "1SFC" */
#define CFS_IO_MAX_LEN     (1ull << 30) /* one I/O: 1 GiB at most */

#define CFS_VIRT_DIR   "3fs-virt"
#define CFS_VIRT_IOVS  "iovs"
#define CFS_SUBMIT_LINK "submit-ios"

#define CFS_OP_READ  1u
#define CFS_OP_WRITE 2u
/* Or'ed into a write SQE's op: its `reserved` field holds the CRC32C of
 * the LEN bytes at buf_off, computed by the application (KVCache computes
 * it for its index anyway). The daemon then sends that CRC with the write
 * instead of computing its own over the shared buffer; the head storage
 * service checks it against the copy it writes, so bytes that do not match
 * it are never written (the write fails, CFS_ECHECKSUM -> -EIO). Only for
 * daemons advertising CFS_RING_FEAT_WRITE_CRC: older ones fail such an SQE
 * with -EINVAL. */
#define CFS_OP_F_CRC 0x100u

#define CFS_RING_FLAG_ALLOW_READ_UNCOMMITTED 1ull
#define CFS_RING_FLAG_FORBID_READ_HOLES      2ull
/* ChainFS's own (above 3FS's range): a write ring whose writes may be
 * acknowledged without a device flush (KVCache cache mode,
 * STO_WF_NOFLUSH). Daemons before it refuse the ring (-EINVAL). */
#define CFS_RING_FLAG_NOFLUSH                (1ull << 32)

/* daemon_state values */
#define CFS_RING_SERVING 1u

/* daemon_features bits (0 from older daemons) */
#define CFS_RING_FEAT_WRITE_CRC 1u /* write SQEs may carry CFS_OP_F_CRC */

struct cfs_ring_hdr {
	uint32_t magic;            /* CFS_RING_MAGIC, written by the library */
	uint32_t version;          /* CFS_RING_VERSION */
	uint32_t entries;          /* slots; the daemon checks it against the size */
	uint32_t for_read;         /* 1: read ring, 0: write ring */
	int32_t io_depth;          /* see chainfs.h cfs_ior_opts */
	uint32_t timeout_ms;       /* batching wait for io_depth < 0 */
	uint64_t flags;            /* CFS_RING_FLAG_* */
	int32_t daemon_pid;        /* written by the daemon when it maps the ring */
	uint32_t daemon_state;     /* CFS_RING_SERVING once mapped */
	uint32_t daemon_features;  /* CFS_RING_FEAT_*, written by the daemon before daemon_state */
	uint8_t pad0[20];
	_Atomic uint32_t sq_tail;  /* app: SQEs written so far (release) */
	uint8_t pad1[60];
	_Atomic uint32_t sq_head;  /* daemon: SQEs taken so far (release) */
	uint8_t pad2[60];
	_Atomic uint32_t cq_head;  /* daemon: CQEs posted so far (release) */
	uint8_t pad3[60];
	_Atomic uint32_t cq_tail;  /* app: CQEs reaped so far (release) */
	uint8_t pad4[60];
	union {
		sem_t cq_sem;      /* process-shared; the daemon posts after CQEs */
		uint8_t cq_sem_space[64];
	};
	uint8_t pad5[CFS_RING_HDR_BYTES - 384];
};

struct cfs_ring_sqe {
	uint8_t buf_id[16]; /* the iov's id */
	uint64_t buf_off;   /* offset of the data in the iov */
	uint64_t file_off;  /* offset in the file */
	uint64_t len;       /* bytes, 1..CFS_IO_MAX_LEN */
	uint64_t userdata;  /* echoed in the CQE */
	uint32_t reg;       /* registration id from CFS_IOC_REG */
	uint32_t index;     /* slot, 0..entries-1, echoed in the CQE */
	uint32_t op;        /* CFS_OP_READ / CFS_OP_WRITE [| CFS_OP_F_CRC] */
	uint32_t reserved;  /* 0; with CFS_OP_F_CRC the CRC32C of the bytes */
};

struct cfs_ring_cqe {
	int64_t result;     /* bytes done, or -errno */
	uint64_t userdata;  /* from the SQE */
	uint32_t index;     /* from the SQE */
	uint32_t reserved;  /* CFS_RING_CQE_F_CRC: CRC32C of the RESULT bytes read */
	uint64_t reserved2; /* flags: CFS_RING_CQE_F_* (0 from older daemons) */
};

/* A read's CQE carries the CRC32C of the bytes it placed in the iov (the
 * daemon folds the CRCs it checked against storage's, no extra pass), so
 * a caller that verifies the data against a CRC of its own (KVCache)
 * needs no pass either. Set only when every byte came from storage (no
 * hole filled with zeros). */
#define CFS_RING_CQE_F_CRC 1ull

struct cfs_ioc_reg {
	uint64_t flags;     /* in: 0 */
	uint32_t reg;       /* out: registration id */
	uint32_t mode;      /* out: 1 read, 2 write, 3 both */
};

#define CFS_IOC_GET_MAGIC _IOR('c', 0x31, uint32_t)
#define CFS_IOC_REG       _IOWR('c', 0x32, struct cfs_ioc_reg)
#define CFS_IOC_DEREG     _IOW('c', 0x33, uint32_t)

static_assert(sizeof(_Atomic uint32_t) == 4, "atomic u32 is 4 bytes");
static_assert(sizeof(sem_t) <= 64, "sem_t fits its slot");
static_assert(offsetof(struct cfs_ring_hdr, magic) == 0, "abi");
static_assert(offsetof(struct cfs_ring_hdr, version) == 4, "abi");
static_assert(offsetof(struct cfs_ring_hdr, entries) == 8, "abi");
static_assert(offsetof(struct cfs_ring_hdr, for_read) == 12, "abi");
static_assert(offsetof(struct cfs_ring_hdr, io_depth) == 16, "abi");
static_assert(offsetof(struct cfs_ring_hdr, timeout_ms) == 20, "abi");
static_assert(offsetof(struct cfs_ring_hdr, flags) == 24, "abi");
static_assert(offsetof(struct cfs_ring_hdr, daemon_pid) == 32, "abi");
static_assert(offsetof(struct cfs_ring_hdr, daemon_state) == 36, "abi");
static_assert(offsetof(struct cfs_ring_hdr, daemon_features) == 40, "abi");
static_assert(offsetof(struct cfs_ring_hdr, sq_tail) == 64, "abi");
static_assert(offsetof(struct cfs_ring_hdr, sq_head) == 128, "abi");
static_assert(offsetof(struct cfs_ring_hdr, cq_head) == 192, "abi");
static_assert(offsetof(struct cfs_ring_hdr, cq_tail) == 256, "abi");
static_assert(offsetof(struct cfs_ring_hdr, cq_sem) == 320, "abi");
static_assert(sizeof(struct cfs_ring_hdr) == CFS_RING_HDR_BYTES, "abi");
static_assert(offsetof(struct cfs_ring_sqe, buf_id) == 0, "abi");
static_assert(offsetof(struct cfs_ring_sqe, buf_off) == 16, "abi");
static_assert(offsetof(struct cfs_ring_sqe, file_off) == 24, "abi");
static_assert(offsetof(struct cfs_ring_sqe, len) == 32, "abi");
static_assert(offsetof(struct cfs_ring_sqe, userdata) == 40, "abi");
static_assert(offsetof(struct cfs_ring_sqe, reg) == 48, "abi");
static_assert(offsetof(struct cfs_ring_sqe, index) == 52, "abi");
static_assert(offsetof(struct cfs_ring_sqe, op) == 56, "abi");
static_assert(sizeof(struct cfs_ring_sqe) == 64, "abi");
static_assert(offsetof(struct cfs_ring_cqe, result) == 0, "abi");
static_assert(offsetof(struct cfs_ring_cqe, userdata) == 8, "abi");
static_assert(offsetof(struct cfs_ring_cqe, index) == 16, "abi");
static_assert(sizeof(struct cfs_ring_cqe) == 32, "abi");
static_assert(sizeof(struct cfs_ioc_reg) == 16, "abi");

/* Bytes of a ring with ENTRIES slots (a multiple of 4096). */
static inline size_t cfs_ring_bytes(uint32_t entries)
{
	size_t b = CFS_RING_HDR_BYTES + (size_t)entries * (sizeof(struct cfs_ring_sqe) +
	                                                   sizeof(struct cfs_ring_cqe));
	return (b + 4095) & ~(size_t)4095;
}

/* Slots a ring file of SIZE bytes holds (0 if too small). */
static inline uint32_t cfs_ring_entries(size_t size)
{
	if (size < CFS_RING_HDR_BYTES + sizeof(struct cfs_ring_sqe) + sizeof(struct cfs_ring_cqe))
		return 0;
	size_t e = (size - CFS_RING_HDR_BYTES) / (sizeof(struct cfs_ring_sqe) + sizeof(struct cfs_ring_cqe));
	return e > CFS_RING_MAX_ENTRIES ? CFS_RING_MAX_ENTRIES : (uint32_t)e;
}

static inline struct cfs_ring_sqe *cfs_ring_sqes(void *ring)
{
	return (struct cfs_ring_sqe *)((char *)ring + CFS_RING_HDR_BYTES);
}

static inline struct cfs_ring_cqe *cfs_ring_cqes(void *ring, uint32_t entries)
{
	return (struct cfs_ring_cqe *)((char *)ring + CFS_RING_HDR_BYTES +
	                          (size_t)entries * sizeof(struct cfs_ring_sqe));
}

#endif
