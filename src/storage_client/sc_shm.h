/* sc_shm.h - the storage client's side of the same-host shared-memory bulk
 * path (docs/rpc.md "Shared memory"): one sealed memfd arena per client,
 * registered once per storage server connection (SHM_REG), writes whose
 * bytes the client puts in a slot of it (SHM_WRITE), and reads
 * (SHM_READ) whose bytes the server copies into a slot of the arena, the
 * reply carrying only the per-range results.
 *
 * Used by storage_client.c only. Reads go over a connection of their own
 * per server (an RPC client with one connection per peer), so the region
 * a read names was registered on the connection it travels on.
 *
 * Threads: every function may be called from any thread, including RPC
 * loop threads (nothing blocks), except sc_shm_write (blocks).
 *
 * Also used by the storage service for CRAQ forwards to a successor on
 * the same host (craq_write.c), through sc_shm_write_async.
 */
#ifndef CFS_STORAGE_CLIENT_SC_SHM_H
#define CFS_STORAGE_CLIENT_SC_SHM_H

#include <stdint.h>
#include <sys/uio.h>

#include "net/rpc.h"
#include "storage/storage_proto.h"

struct sc_shm;

/* NULL when the path is off: CFS_NO_SHM=1 or CFS_NO_LOCAL_SOCKET=1 in the
 * environment (or RO->no_local_socket), or no memfd could be made.
 * CFS_NO_SHM_WRITE=1 keeps reads on it and sends writes over the socket
 * (for A/B measurements). RO is
 * copied (secret included) for the client's own RPC client. */
struct sc_shm *sc_shm_new(const struct rpc_opts *ro);
/* sc_shm_new with an arena of ARENA_BYTES (64 to 256 MiB: clamped), for
 * a user that keeps many write buffers in it (sc_shm_buf_get). */
struct sc_shm *sc_shm_new_arena(const struct rpc_opts *ro, uint64_t arena_bytes);
/* NULL-safe; no read may be in flight. */
void sc_shm_free(struct sc_shm *s);

/* DONE(ARG, RES, DATA) runs once on an RPC loop thread: RES as for an
 * rpc_call (no bulk); DATA is the slot holding the reply's compact bytes
 * (give it back with sc_shm_release) when the server answered, NULL
 * otherwise. Status -EAGAIN with DATA NULL means "not over shared memory
 * this time" (the server does not know the messages, the region was lost
 * with its connection): send the read over the socket. */
typedef void (*sc_shm_done_fn)(void *arg, const struct rpc_result *res, const uint8_t *data);

/* Sends read M (CAP bytes at most) to ADDR over shared memory. When
 * [DST, DST+CAP) lies in memory added with sc_shm_mem_add (DST may be
 * NULL) the server copies the compact bytes straight there and DONE gets
 * DATA == DST; otherwise they land in an arena slot. 0: DONE will run.
 * <0 (nothing sent, DONE will not run): use the socket path (-EAGAIN: not
 * registered yet, a registration was started; -ENOSPC: no free slot;
 * -EOPNOTSUPP: this server cannot; others). */
int sc_shm_read(struct sc_shm *s, const char *addr, const struct sto_read_req *m, uint64_t cap,
		void *dst, sc_shm_done_fn done, void *arg);
/* Sends read M (M->n ranges) to ADDR over shared memory with range i's
 * bytes going straight to IOV[i] (NIOV == M->n, IOV[i].iov_len its
 * len), every segment in one memory added with sc_shm_mem_add (SHM_READV:
 * scattered destinations, no copy on this side). DONE gets DATA ==
 * IOV[0].iov_base when the server answered; each range's bytes are then
 * in place. 0: DONE will run; <0, nothing sent: -EOPNOTSUPP (not all in
 * one added memory, or off for this server), -EAGAIN (that memory is not
 * registered with this server yet: a registration was started), others.
 * Callers fall back to sc_shm_read or the socket. */
int sc_shm_readv(struct sc_shm *s, const char *addr, const struct sto_read_req *m,
		 const struct iovec *iov, int niov, sc_shm_done_fn done, void *arg);
/* Sends write M (its data: M->len bytes at DATA, copied into a slot of
 * the arena) to ADDR over shared memory and waits for the answer, whose
 * payload goes to RESP. Blocking: not on an RPC loop thread. *FALLBACK is
 * 1 when nothing was applied and the write should go over the socket
 * (the return is then <0: -EAGAIN, -ENOSPC, -EOPNOTSUPP ...); otherwise 0
 * and the return is the write's status as for an rpc_call (a timeout
 * leaves the outcome unknown: retry with the same channel and seq). The
 * slot is not reused before the server answered (a timed-out one never). */
int sc_shm_write(struct sc_shm *s, const char *addr, const struct sto_write_req *m,
		 const void *data, struct buf *resp, int *fallback);
/* sc_shm_write without waiting: DONE(ARG, RES, FALLBACK) runs once on an
 * RPC loop thread when the answer came (FALLBACK 1: nothing was applied,
 * send the write over the socket; 0: RES is the write's answer; a
 * timeout leaves the outcome unknown). DATA stays the caller's and must
 * not change until DONE (it is copied at once into an arena slot, unless
 * it lies in memory added with sc_shm_mem_add). 0: DONE will run; <0:
 * nothing sent, DONE will not run (use the socket). Never blocks. */
typedef void (*sc_shm_write_fn)(void *arg, const struct rpc_result *res, int fallback);
int sc_shm_write_async(struct sc_shm *s, const char *addr, const struct sto_write_req *m,
		       const void *data, uint32_t timeout_ms, sc_shm_write_fn done, void *arg);
/* A buffer of LEN bytes in the arena, for data the caller puts there
 * itself and then sends with sc_shm_write_async or sc_shm_write: such a
 * write moves with no copy on this side to every server the arena is
 * registered with (a storage service receiving a chain write into it
 * forwards it to a same-host successor that way). 256 KiB-aligned (fit
 * for O_DIRECT). NULL when S is NULL, writes are off (CFS_NO_SHM_WRITE),
 * LEN is 0 or no run of free grains holds it: use memory of your own.
 * Thread-safe. */
void *sc_shm_buf_get(struct sc_shm *s, uint64_t len);
/* 1 when P lies in S's arena (a buffer of sc_shm_buf_get); NULL-safe. */
int sc_shm_buf_owns(const struct sc_shm *s, const void *p);
/* The arena's mapping (*SIZE bytes), the home of every sc_shm_buf_get
 * buffer until sc_shm_free; NULL (and *SIZE 0) for NULL S. */
void *sc_shm_arena_mem(const struct sc_shm *s, uint64_t *size);
/* Gives back buffer P of sc_shm_buf_get (LEN as got). QUARANTINE: a
 * write that named it timed out or lost its connection, so a server may
 * still read it: it is never handed out again (counted in quarantined).
 * The caller's writes naming P must all have answered (DONE ran). */
void sc_shm_buf_put(struct sc_shm *s, void *p, uint64_t len, int quarantine);
/* Adds the caller's memory for zero-copy transfers: SIZE bytes mapped
 * shared at BASE from memfd FD (sealed at least against shrinking: the
 * server refuses anything else, as a shrink would SIGBUS it). FD is
 * duplicated; BASE must stay mapped until sc_shm_mem_del or sc_shm_free.
 * A read whose destination, or a write whose data, lies wholly in such
 * memory then moves with no copy on this side: each server maps the
 * memfd once (registered on first use; until then the arena is used).
 * Reads: a read into this memory that fails -CFS_ETIMEDOUT or
 * -CFS_ECLOSED completes only after its server revoked the region
 * (SHM_UNREG answered: nothing more is copied into it; the next request
 * registers again); when the revocation itself could not be confirmed
 * (the connection is gone, an old server) it is counted in direct_lost
 * and the server may still write the bytes of that read late. 0, -EBADF
 * (not a sealed memfd of at least SIZE), -EEXIST (overlaps memory added
 * before), -ENOSPC (15 added already), -EOPNOTSUPP (S NULL). */
int sc_shm_mem_add(struct sc_shm *s, int fd, void *base, uint64_t size);
/* Removes the memory added at BASE: no request started afterwards uses
 * it; every server that registered it gets SHM_UNREG (from its answer on
 * it copies nothing more into the memfd, and it unmaps it). The caller
 * must have no request in flight with bytes in it (they would still
 * touch BASE); those that failed already are over. BASE may be unmapped
 * on return; the duplicated descriptor is closed once no registration
 * in flight borrows it. 0, -ENOENT (not added), -EOPNOTSUPP (S NULL). */
int sc_shm_mem_del(struct sc_shm *s, const void *base);
/* Gives back a slot DONE handed over for a read of CAP bytes (nothing
 * to give back when DATA is the caller's memory). */
void sc_shm_release(struct sc_shm *s, const uint8_t *data, uint64_t cap);

struct sc_shm_stats {
	uint64_t reads;       /* reads answered over shared memory */
	uint64_t fallbacks;   /* reads sc_shm_read refused or that came back -EAGAIN */
	uint64_t registered;  /* successful registrations */
	uint64_t quarantined; /* grains never reused: a read or write timed out or its
				 connection closed, so the server may still use them */
	uint64_t writes;      /* writes answered over shared memory */
	uint64_t write_fallbacks; /* writes sc_shm_write sent back to the socket */
	uint64_t direct_reads;  /* reads that landed in the caller's memory (no copy here) */
	uint64_t direct_writes; /* writes taken from the caller's memory (no copy here) */
	uint64_t direct_lost;   /* reads into the caller's memory that failed and whose
				   region's revocation was not confirmed (the server
				   may write there late) */
	uint64_t unregs;        /* SHM_UNREG answered 0 (memory removed or revoked) */
};
void sc_shm_get_stats(const struct sc_shm *s, struct sc_shm_stats *out);

#endif
