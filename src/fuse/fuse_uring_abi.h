/* fuse_uring_abi.h - the kernel's FUSE-over-io_uring ABI (FUSE protocol
 * 7.42, Linux 6.14+; fs/fuse/dev_uring.c), as in include/uapi/linux/fuse.h
 * of Linux 6.18.
 *
 * WHY HERE. Debian 12's <linux/fuse.h> (linux-libc-dev) and libfuse 3.14
 * predate it; the layouts below are the kernel's and must not change.
 * Guarded so a newer <linux/fuse.h> that has them wins.
 */
#ifndef CFS_FUSE_FUSE_URING_ABI_H
#define CFS_FUSE_FUSE_URING_ABI_H

#include <stdint.h>

#ifndef FUSE_OVER_IO_URING
/* INIT reply flag (bit 41: flags2 bit 9, needs FUSE_INIT_EXT): the
 * server will fetch requests through io_uring. */
#define FUSE_OVER_IO_URING (1ULL << 41)
#endif

#ifndef FUSE_URING_IN_OUT_HEADER_SZ
#define FUSE_URING_IN_OUT_HEADER_SZ 128
#define FUSE_URING_OP_IN_OUT_SZ     128

/* Part of fuse_uring_req_header. */
struct fuse_uring_ent_in_out {
	uint64_t flags;
	/* the request's unique: echoed in fuse_uring_cmd_req.commit_id */
	uint64_t commit_id;
	/* bytes used in the payload buffer (either direction) */
	uint32_t payload_sz;
	uint32_t padding;
	uint64_t reserved;
};

/* An entry's header buffer (iov[0] of a REGISTER). */
struct fuse_uring_req_header {
	/* struct fuse_in_header / struct fuse_out_header */
	char in_out[FUSE_URING_IN_OUT_HEADER_SZ];
	/* the per-opcode header (the request's first argument) */
	char op_in[FUSE_URING_OP_IN_OUT_SZ];
	struct fuse_uring_ent_in_out ring_ent_in_out;
};

/* sqe->cmd_op of IORING_OP_URING_CMD on /dev/fuse */
enum fuse_uring_cmd {
	FUSE_IO_URING_CMD_INVALID = 0,
	/* register the entry's buffers and fetch a request */
	FUSE_IO_URING_CMD_REGISTER = 1,
	/* commit the reply of a request and fetch the next */
	FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2,
};

/* In the 80-byte command area of an SQE128. */
struct fuse_uring_cmd_req {
	uint64_t flags;
	/* entry identifier for commits */
	uint64_t commit_id;
	/* queue the command is for (queue index: a CPU number) */
	uint16_t qid;
	uint8_t padding[6];
};
#endif

#define FUSE_URING_IOV_SEGS 2 /* header and payload */

_Static_assert(sizeof(struct fuse_uring_ent_in_out) == 32, "fuse_uring_ent_in_out layout");
_Static_assert(sizeof(struct fuse_uring_req_header) == 288, "fuse_uring_req_header layout");
_Static_assert(sizeof(struct fuse_uring_cmd_req) == 24, "fuse_uring_cmd_req layout");

#endif
