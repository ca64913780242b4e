/* fuse_uring.h - the mount's FUSE requests over io_uring (the kernel's
 * FUSE-over-io_uring, fs/fuse/dev_uring.c; ABI in fuse_uring_abi.h).
 *
 * WHY. Over /dev/fuse every request costs the server a read(2) and its
 * reply a writev(2), and each crossing wakes somebody. Over the ring an
 * entry's reply and the fetch of its next request are one
 * io_uring_enter (COMMIT_AND_FETCH), and the kernel queues requests per
 * CPU (queue = the CPU of the caller).
 *
 * HOW. One io_uring (SQE128) per possible CPU ("queue"), DEPTH entries
 * each: an entry is a header buffer plus a payload buffer the kernel
 * writes a request into and reads its reply from. The session's custom
 * writev (fuse_fs.c) hands every reply to furing_reply first: a reply to
 * a ring request is copied into its entry and committed, anything else
 * (INIT, notifications, replies to requests read from /dev/fuse) goes to
 * /dev/fuse as before. Forgets and interrupts always come over /dev/fuse,
 * so its loop keeps running beside the queues' (fuse_loop.c).
 *
 * Start: the INIT reply must carry FUSE_OVER_IO_URING (furing_init_reply
 * sets it and notes the payload size the kernel will require), and the
 * entries can only be registered once the kernel processed that reply
 * (furing_start, right after it was written). The kernel holds new
 * requests until every queue has an entry, then sends them all over the
 * ring. When it refuses (module parameter enable_uring=N: EOPNOTSUPP) the
 * mount logs one line and stays on /dev/fuse.
 *
 * A request's entry is committed once both its reply was given (any
 * thread: RPC completions reply from the storage client's threads) and
 * the thread that processed it returned from libfuse (furing_done), so a
 * handler that still reads its request after replying never sees the
 * next request over it.
 *
 * Only the thread reading a queue (fuse_loop.c's leader for that queue)
 * submits to its ring: other threads push their commits on a list, and
 * the reader submits them with its next wait (one io_uring_enter commits
 * everything that came meanwhile and waits), woken through an eventfd
 * read armed in the ring when it sleeps. The kernel fetches an entry's
 * next request as task work of the thread that submitted its commit: with
 * commits submitted by RPC threads, that work interrupted them (their
 * epoll_wait returned EINTR) and then woke the reader as well, and
 * their submits contended on an SQ lock (measured: 1.9 context switches
 * and 3.5 syscalls per 4 KiB read against 1.0 and 2.9 over /dev/fuse).
 *
 * CFS_FUSE_URING_RINGS_PER_CPU=N (an experiment, off by default): N rings
 * of one entry per CPU, each served by one thread (no leader/follower):
 * a thread's own commit then fetches its next request (fewer syscalls and
 * switches for metadata, more for asynchronous reads; docs/posix.md).
 *
 * Threads: all functions are thread-safe unless noted.
 */
#ifndef CFS_FUSE_FUSE_URING_H
#define CFS_FUSE_FUSE_URING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct fuse_buf;
struct fuse_init_out;
typedef struct furing furing;
struct furing_ent;

/* State for the FUSE connection DEVFD (borrowed: stays open until
 * furing_free), DEPTH entries per queue (0: 32). Registers nothing yet.
 * 0 or -errno (-ENOMEM). */
int furing_new(int devfd, int depth, furing **out);

/* Frees R after every thread that could use it stopped (the loops
 * joined, replies in flight done). NULL is fine. */
void furing_free(furing *r);

/* Sets FUSE_OVER_IO_URING (and FUSE_INIT_EXT) in the INIT reply O before
 * it is written, and notes the payload size the kernel derives from it. */
void furing_init_reply(furing *r, struct fuse_init_out *o);

/* Registers the entries, once the INIT reply was written. On a refusal
 * the ring stays off (one log line) and the queue loops end. */
void furing_start(furing *r);

/* Takes a reply (IOV[0] the fuse_out_header). Returns the bytes taken
 * when it answers a request that came over the ring, 0 when it does not
 * (the caller writes it to /dev/fuse), -errno on failure. */
ssize_t furing_reply(furing *r, const struct iovec *iov, int count);

/* Rings to serve, each by its own loop (fuse_loop.c): one per possible
 * CPU (the kernel's queues), or more with CFS_FUSE_URING_RINGS_PER_CPU. */
int furing_nqueues(const furing *r);

/* Threads a ring's loop may use at most; 0: no bound of its own. */
int furing_queue_threads(const furing *r);

/* Waits for the next request on queue Q: 0 with *ENT and BUF (the whole
 * request, in the entry's memory: valid until furing_done) set;
 * -EOPNOTSUPP when the ring never started (refused); -ESHUTDOWN after
 * furing_stop or when the kernel ended the queue. One thread per queue at
 * a time. */
int furing_receive(furing *r, int q, struct furing_ent **ent, struct fuse_buf *buf);

/* The thread that processed ENT's request returned from libfuse. */
void furing_done(furing *r, struct furing_ent *ent);

/* Wakes every furing_receive, which then returns -ESHUTDOWN. */
void furing_stop(furing *r);

/* Requests answered over the ring so far. */
uint64_t furing_served(const furing *r);

#endif
