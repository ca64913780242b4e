/* fuse_loop.h - the mount's multi-threaded FUSE session loop: one thread
 * reads /dev/fuse at a time (the leader), and a request that will not
 * block (a lookup or getattr the mount answers from its caches) is
 * answered by that same thread, which then reads the next request.
 *
 * WHY. libfuse's loop (fuse_session_loop_mt) keeps every idle worker
 * blocked in read(2) on /dev/fuse, and the kernel wakes them in FIFO
 * order, so a single application doing stat after stat had each of its
 * requests served by a different one of ~30 threads. On a busy 2-core
 * machine the scheduler then placed the woken thread and the woken
 * application on different CPUs half of the time (bindfs, with its 6
 * threads: 1 time in 10), and each such wake-up waited behind whatever
 * ran there: 20,000 stats after a cache drop took 2-3x bindfs's time with
 * the mount's CPU per stat below bindfs's (issue 13). With one thread the
 * mount and the application ping-pong on one CPU.
 *
 * HOW. Idle threads wait on their own condition variable in a LIFO stack
 * (the most recently busy thread is woken first: warm caches, one CPU).
 * The leader reads a request and, unless its opcode is one that usually
 * completes without blocking (LOOKUP, GETATTR, FORGET, BATCH_FORGET;
 * OPEN, READ, FLUSH, RELEASE, which a small file read whole usually is:
 * fuse_fs.c "Open-ahead"; a small chunk READ, sent asynchronously; and
 * GETXATTR, the root's access ACL on a non-root caller's path walk),
 * hands the reading over to the top idle thread (or starts a new one, up
 * to MAX_THREADS) before processing it, so requests that wait on RPCs
 * never hold up the next request. A handler of a "fast" opcode that finds
 * it must block after all (a cache miss: a meta round trip) calls
 * fuseloop_will_block first, which hands the reading over then. While
 * the leader serves a fast request it stays the reader (a thread that
 * finishes a request meanwhile goes idle) and reads the next request
 * without taking the loop's lock. When a thread finishes a request and
 * nobody reads, it reads; else it goes idle.
 *
 * A fast request stays with the reading thread even when more are
 * queued. Handing the reading over after a READ when poll(2) found the
 * next request queued (at most 2 or 3 served at once; also with the
 * finishing thread reading beside the reader while requests were
 * queued) gave 4 KiB random reads at queue depth 64 no more IOPS on the
 * shared 2-core host (median 0.59x and 0.94x of this loop's), for the
 * same or more of the mount's CPU per read: the threads it added waited
 * for a CPU longer than they ran (bench/history.md "READ handed over on
 * a backlog").
 *
 * With FUSELOOP_NS_FAST (the mount runs a metadata instance in its own
 * process, meta_local.h, and CFS_FUSE_NS_FAST=1) the namespace changes
 * are fast opcodes too; with FUSELOOP_NS_AUTO (the mount's default with
 * the in-process meta; CFS_FUSE_NS_FAST=0 turns it off) they are while
 * the host's CPUs are not contended (sched_hint.h CPU pressure):
 * CREATE, MKNOD, MKDIR, SYMLINK, LINK, UNLINK, RMDIR, RENAME(2), and
 * WRITE (a small file's write is one txn on the in-process store; the
 * handler hands over first for any other write). Their
 * waits are deep in the meta client and the KV store, which call
 * block_hint_wait (common/block_hint.h) right before they wait; every
 * thread of the loop sets fuseloop_will_block as its block hint.
 *
 * CFS_FUSE_SPIN_US=N (0..1000, default 100; 0: off) in the mount's
 * environment: after serving a fast request other than READ or WRITE
 * the reader polls /dev/fuse
 * for up to N us before it sleeps in read(2), while the host's CPUs are
 * not contended (CPU pressure, as for FUSELOOP_NS_AUTO), so a vCPU does
 * not halt between one caller's requests (fuse_loop.c fl_spin).
 *
 * Over io_uring (fuse_uring.h) each ring queue gets a loop of its own
 * with the same rules, its reader waiting on the queue's completions
 * instead of reading /dev/fuse; the /dev/fuse loop keeps running for
 * what the kernel still sends there (INIT, forgets, interrupts).
 *
 * Threads: fuseloop_run from the thread that owns the session (it waits
 * there until the session exits: unmount, fuse_session_exit, or a signal
 * that interrupts its wait); fuseloop_will_block from any thread (a
 * no-op outside a request of this loop).
 */
#ifndef CFS_FUSE_FUSE_LOOP_H
#define CFS_FUSE_FUSE_LOOP_H

struct fuse_session;
struct furing;

/* FLAGS of fuseloop_run: the namespace changes run in this process
 * (meta_local.h) and hand over only where they wait (block_hint.h).
 * NS_FAST: the reading thread always serves them; NS_AUTO: it does while
 * the host's CPUs are not contended (CPU pressure), else it hands the
 * reading over first as for any other opcode. */
#define FUSELOOP_NS_FAST 1u
#define FUSELOOP_NS_AUTO 2u

/* Serves SE until it exits. 0 after an unmount or a stop (signal,
 * fuse_session_exit); -errno when reading the device failed or no
 * thread could be started. MAX_THREADS >= 1 bounds the requests served
 * at once per loop. RING (borrowed; may be NULL): also serve its queues
 * once it starts; stopped (furing_stop) before this returns. FLAGS:
 * FUSELOOP_* or 0. */
int fuseloop_run(struct fuse_session *se, int max_threads, struct furing *ring, unsigned flags);

/* The calling request handler is about to wait (an RPC): let another
 * thread read the next request meanwhile. Cheap when already done. */
void fuseloop_will_block(void);

#endif
