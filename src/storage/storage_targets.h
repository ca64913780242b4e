/* storage_targets.h - what the storage service, CRAQ (craq_*.c) and the
 * mgmtd link share, below all of them: the target registry (target ids to
 * open chunk engines), request data buffers, and request admission.
 *
 * Direction: storage_service.c (RPC front) -> craq_*.c, fence_witness.c,
 * mgmtd_link.c -> storage_targets.c -> chunk engine. Nothing here calls
 * up; the service struct itself is declared in storage_int.h.
 *
 * Threads: the registry is filled by stor_targets_open before the RPC
 * server starts and emptied by stor_targets_close after it stopped; in
 * between every function here may be called from any thread.
 */
#ifndef CFS_STORAGE_STORAGE_TARGETS_H
#define CFS_STORAGE_STORAGE_TARGETS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "mgmtd/routing.h"

struct storage_service;
struct storage_service_opts;

/* One chain op's local engine work in flight (stor_io_begin), linked in
 * its target's list oldest first. Owned by the op; zeroed when idle. */
struct stor_io_ent {
	uint64_t since; /* clock_mono_ms at begin; 0: not in the list */
	struct stor_io_ent *prev, *next;
};

/* One target: a directory with its chunk engine and chunk locks. */
struct stor_target {
	uint32_t slot;                 /* 1..n in --targets order */
	char *dir;                     /* owned */
	struct chunk_engine *eng;
	struct craq_locks *locks;
	_Atomic int local_state;       /* enum chain_local_state reported to mgmtd */
	_Atomic int started;           /* startup fencing passed (reported ONLINE) */
	/* Held over every change of the pair (local_state, started): a fence
	 * (craq_fence_target), the link thread's state rules and SYNC_DONE.
	 * Each decides from the pair as read and changes it only if it is
	 * still so, so a fence that comes in between is never overwritten
	 * (it would leave a target reporting ONLINE or UPTODATE that does not
	 * serve, which mgmtd then keeps in its chain). Reads stay lock-free;
	 * nothing else is taken under it. */
	pthread_mutex_t state_mu;
	/* Under state_mu: the routing version SYNC_DONE checked when it
	 * stored UPTODATE. A link-thread decision from an older routing (the
	 * target still OFFLINE or WAITING in it) must not undo that. */
	uint64_t uptodate_rver;
	uint32_t synced_target;        /* resync worker: the successor last synced ... */
	uint32_t synced_chain_ver;     /* ... at this chain version (skip repeats) */
	/* Fenced itself over a chain op (craq_write.c): a full disk, or a
	 * failed apply or forward. No rejoin before this (clock_mono_ms),
	 * for a full disk unless space came back; the wait doubles per fence
	 * (of either kind: a disk that keeps failing must not flap its chain
	 * every 100 ms). */
	_Atomic uint64_t nospace_until;
	_Atomic uint32_t nospace_backoff_ms;
	_Atomic int fence_failed;      /* the last such fence was not for a full disk */
	_Atomic uint64_t serving_since; /* link thread: SERVING since (mono ms), 0 if not */
	uint64_t rep_capacity, rep_used; /* sizes last reported to mgmtd, under
					    s->report_mu (mgmtd_link.c) */
	_Atomic uint32_t fence_gen;    /* counts craq_fence_target's fences (resync: did
					  this target fence itself during a pass?) */
	/* Chain ops' local engine work in flight, oldest first: the I/O
	 * watchdog (stor_iowatch.c) fences a target whose oldest is stuck. */
	pthread_mutex_t io_mu;
	struct stor_io_ent io_list;    /* sentinel */
};

/* The rejoin backoff of a replica fenced for a full disk (craq_write.c,
 * docs/operations.md "A full disk"): 2 s, doubling per such fence up to
 * 60 s. A replica that has served again for STOR_NOSPACE_RESET_MS in one
 * go starts over at 2 s: a disk full once an hour must not cost every
 * later fence the full minute. Any thread. */
#define STOR_NOSPACE_BACKOFF_MIN_MS 2000
#define STOR_NOSPACE_BACKOFF_MAX_MS 60000
#define STOR_NOSPACE_RESET_MS 60000
/* T fenced itself for a full disk at NOW (mono ms): the next backoff,
 * stored with the time before which T does not rejoin; returns it. */
uint32_t stor_nospace_fenced(struct stor_target *t, uint64_t now);
/* The link thread's view of T at NOW: SERVING (public state) or not.
 * Clears T's backoff once it has served STOR_NOSPACE_RESET_MS without a
 * break; true when this call cleared it. */
int stor_nospace_served(struct stor_target *t, int serving, uint64_t now);

/* The I/O watchdog's bookkeeping (stor_iowatch.c has the rule). BEGIN
 * enters E (idle: since == 0) in T's list of local engine work in
 * flight, stamped now; END takes it out (a no-op if idle). The caller
 * owns E and must END it before freeing it. Any thread; a mutex each. */
void stor_io_begin(struct stor_target *t, struct stor_io_ent *e);
void stor_io_end(struct stor_target *t, struct stor_io_ent *e);
/* Milliseconds the oldest local engine work of T has been in flight at
 * NOW (mono ms), 0 if none. Any thread. */
uint64_t stor_io_oldest_age(struct stor_target *t, uint64_t now);

/* Opens every target of O (engines, slot files) and the buffer pool into
 * S. 0, or <0 with ERR filled (what was opened stays for the close). */
int stor_targets_open(struct storage_service *s, const struct storage_service_opts *o, char *err,
		      size_t errlen);
/* Closes the engines and frees the registry and pool. Idempotent. */
void stor_targets_close(struct storage_service *s);

/* The target for ID on this node, or NULL. */
struct stor_target *stor_target_by_id(struct storage_service *s, uint32_t id);
uint32_t stor_target_id(struct storage_service *s, const struct stor_target *t);
/* Address of NODE from RI (borrowed from it), NULL if unknown. */
const char *stor_node_addr(const struct route_info *ri, uint32_t node_id);

/* An aligned buffer of ceil4k(n) bytes (at least one page), or NULL. */
void *stor_alloc_aligned(uint64_t n);
/* Request data buffers: 4 KiB-aligned, from the pool when N fits one
 * (no page faults per request), else the heap; NULL on -ENOMEM. Put back
 * with the same N. Any thread. */
void *stor_buf_get(struct storage_service *s, uint64_t n);
void stor_buf_put(struct storage_service *s, void *p, uint64_t n);
/* A buffer for a chain write's data: in the service's shared-memory
 * arena when it has one and a run of it is free (sc_shm_buf_get), so the
 * forward to a same-host successor names the bytes instead of copying
 * them (craq_write.c), else stor_buf_get. Put back with stor_buf_put
 * (which tells the two apart). Any thread. */
void *stor_wbuf_get(struct storage_service *s, uint64_t n);

/* Admission: 0 and one count of s->inflight (drop it with stor_end once
 * replied), or -CFS_EUNAVAIL while stopping. Fencing is checked one level
 * up (fence_witness_admit). */
int stor_begin(struct storage_service *s);
void stor_end(struct storage_service *s);

#endif
