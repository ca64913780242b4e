/* storage_int.h - internals shared by the storage service's files:
 * storage_service.c (RPC handlers, direct I/O), storage_targets.c (target
 * registry, buffers, admission; below the others), craq_lock.c (chunk locks,
 * exactly-once cache, delayed-retry scheduler), craq_write.c (chain writes
 * and removes), craq_resync.c (resync of a returning successor) and
 * mgmtd_link.c (registration, target states, routing). Not a public API.
 */
#ifndef CFS_STORAGE_STORAGE_INT_H
#define CFS_STORAGE_STORAGE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mgmtd/mgmtd_client.h"
#include "net/rpc.h"
#include "storage/chunk_engine.h"
#include "storage/storage_proto.h"
#include "storage/storage_service.h"
#include "storage/storage_targets.h"

/* ---- per-chunk locks (craq_lock.c) ----
 * A chain write holds its chunk's lock from before the local apply until
 * its successor acknowledged; reads of a locked chunk answer "not
 * committed". Waiters are queued FIFO; release hands the lock to the first
 * waiter by calling its fn on the releasing thread (which must not block). */
struct craq_waiter {
	void (*fn)(void *arg);
	void *arg;
	struct craq_waiter *next;
};
struct craq_locks;
struct craq_locks *craq_locks_new(void);
void craq_locks_free(struct craq_locks *l);
/* true: acquired now (W unused); false: queued, W->fn runs when granted. */
bool craq_lock(struct craq_locks *l, struct chunk_id id, struct craq_waiter *w);
void craq_unlock(struct craq_locks *l, struct chunk_id id);
/* Whether ID is locked now; *GEN counts grants of ID's lock (0 if never). */
bool craq_lock_peek(struct craq_locks *l, struct chunk_id id, uint64_t *gen);
/* FN(ARG, ID) runs under the locks' mutex whenever ID's lock is taken
 * while free (short-circuit reads: stor_sc.h); it must not block. */
void craq_locks_set_hook(struct craq_locks *l, void (*fn)(void *arg, struct chunk_id id),
			 void *arg);
/* Blocking acquire for worker threads (resync). */
void craq_lock_wait(struct craq_locks *l, struct chunk_id id);
/* Blocks until every lock held at the call has been released once (each
 * is taken and given back in turn, FIFO behind its waiters): every chain
 * op in flight at the call has ended. Locks taken after it are not waited
 * for. Worker threads only (resync). */
void craq_locks_drain(struct craq_locks *l);

/* ---- exactly-once cache: last result per (client, chain, channel) ---- */
struct craq_dedup;
struct craq_dedup *craq_dedup_new(void);
void craq_dedup_free(struct craq_dedup *d);
/* DEDUP_HIT when SEQ is the cached one (*STATUS and RESP, <= 64 bytes,
 * filled); DEDUP_STALE when the channel's cached seq is above SEQ: a late
 * copy of a request whose sender has since had a later one answered
 * (channels send one request at a time, seqs only grow), which must not
 * be applied again; DEDUP_MISS otherwise. */
enum { DEDUP_MISS = 0, DEDUP_HIT = 1, DEDUP_STALE = 2 };
int craq_dedup_get(struct craq_dedup *d, uint64_t client, uint32_t chain, uint64_t channel,
		   uint64_t seq, int *status, uint8_t *resp, uint32_t *resp_len);
void craq_dedup_put(struct craq_dedup *d, uint64_t client, uint32_t chain, uint64_t channel,
		    uint64_t seq, int status, const uint8_t *resp, uint32_t resp_len);

/* ---- delayed calls (one thread) ---- */
struct craq_sched;
struct craq_sched *craq_sched_new(void);
/* Runs every pending call at once (so nothing leaks), then joins. */
void craq_sched_free(struct craq_sched *s);
void craq_sched_after(struct craq_sched *s, uint32_t ms, void (*fn)(void *arg), void *arg);

/* ---- serving without mgmtd (fence_witness.c) ---- */
struct fence_witness {
	uint32_t fence_ms;               /* the mgmtd client's: T/2 */
	uint32_t permit_ms;              /* W: how long one round of answers holds */
	_Atomic uint64_t permit_until;   /* clock_mono_ms: may serve without mgmtd until */
	_Atomic uint64_t permit_version; /* ... on this routing version only */
	_Atomic uint64_t promise_made;   /* when we last promised a peer */
	_Atomic uint64_t promise_until;  /* ... and until when */
	_Atomic uint64_t promise_version;/* ... on which routing version */
	pthread_t thr;
	bool inited, started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/* ---- the service ---- */
struct sc_shm;
struct craq_resync;
struct craq_list;

struct storage_service {
	struct rpc_server *srv;
	struct rpc_client *cli;        /* forwards and resync (NULL standalone) */
	struct sc_shm *shm;            /* forwards to same-host successors over shared
					  memory (NULL: off, or standalone) */
	struct chunk_fixed *fixed;     /* shm's arena and the regions mapped here, for
					  the engines' fixed buffers (chunk_fixed.h) */
	uint64_t shm_fixed_id;         /* shm's arena in fixed (0: not) */
	struct mgmtd_client *mc;       /* NULL standalone */
	struct craq_dedup *dedup;
	struct craq_sched *sched;
	struct craq_list *list;        /* the listing pool's threads (craq_list.c) */
	struct chunk_bufpool *pool;    /* request data buffers (stor_buf_*) */
	struct stor_target *t;         /* nt targets */
	size_t nt;
	char advertise[64];
	_Atomic int stopping;
	_Atomic uint64_t inflight;     /* chain ops in flight (free waits for 0) */
	/* mgmtd link thread: target states; it wakes the resync workers */
	pthread_t link_thr;
	bool link_started;
	pthread_mutex_t link_mu;
	pthread_cond_t link_cv;        /* routing changed or stopping */
	uint64_t link_kick;            /* under link_mu */
	struct fence_witness fw;       /* NULL mc: unused */
	struct craq_repair *repair;    /* corrupt chunks to repair (craq_repair.c) */
	struct craq_resync *resync;    /* per-target resync workers (craq_resync.c);
	                                  NULL standalone */
	bool faultinj;                 /* CFS_FAULTINJ set at start: test fault points */
	uint32_t fwd_deadline_ms;      /* a chain forward gives up after this long (0: the
					  default, craq_write.c); tests shorten it with
					  CFS_FAULTINJ_FORWARD_DEADLINE_MS beside CFS_FAULTINJ */
	int check_late;                /* CFS_CRAQ_CHECK_LATE at start: a chain write's CRC
					  is checked after its forward was sent (craq_write.c
					  CHECK AFTER FORWARDING): 0 off (before, the
					  default), CHECK_LATE_LOOP or CHECK_LATE_ENGINE */
	struct stor_ring *rings;       /* loop threads' read rings (stor_ring.c), under rings_mu */
	struct stor_sc *sc;            /* short-circuit read mappings (stor_sc.c) */
	pthread_mutex_t rings_mu;
	pthread_mutex_t report_mu;     /* one report to mgmtd built and set at a time */
	/* the I/O watchdog (stor_iowatch.c) */
	uint32_t io_stall_ms;          /* a target with local engine work in flight this
					  long fences itself (STOR_IO_STALL_MS; tests set
					  CFS_FAULTINJ_IO_STALL_MS beside CFS_FAULTINJ) */
	pthread_t iowatch_thr;
	pthread_mutex_t iowatch_mu;
	pthread_cond_t iowatch_cv;     /* signalled at stop */
	bool iowatch_inited, iowatch_started;
};

#define STOR_IO_STALL_MS 10000

/* mgmtd_link.c */
int mgmtd_link_start(struct storage_service *s, const struct storage_service_opts *o, char *err,
		     size_t errlen);
void mgmtd_link_stop(struct storage_service *s);
void mgmtd_link_kick(struct storage_service *s);
/* Pushes the targets' local states and sizes to mgmtd. The sizes of an
 * engine whose mutex is held (a thread of it maybe stuck in a disk call)
 * stay as last read: it never waits on an engine, so one hung disk does
 * not hold back the other targets' states (test_craq.c
 * report_busy_engine). Any thread. */
void mgmtd_link_report(struct storage_service *s);
/* The same with every size as last read: touches no engine at all (a
 * fence, SYNC_DONE). Any thread. */
void mgmtd_link_report_state(struct storage_service *s);

/* fence_witness.c. Whether the service must refuse requests now (the
 * rule is in fence_witness.c's header comment); false without mgmtd. */
bool fence_witness_fenced(struct storage_service *s);
/* Answers a peer's WITNESS request; on a loop thread, never blocks. */
void fence_witness_handle(struct storage_service *s, struct rpc_req *req);
/* Admits a request: stor_begin, then -CFS_EFENCED (count dropped again)
 * if the service is fenced now. 0 or the error to answer. */
int fence_witness_admit(struct storage_service *s);
/* Starts / stops the thread that asks the peers while mgmtd is silent.
 * Start after mgmtd_link_start; 0 or -EAGAIN. Stop is idempotent. */
int fence_witness_start(struct storage_service *s, uint32_t heartbeat_ms);
void fence_witness_stop(struct storage_service *s);

/* stor_iowatch.c: the I/O watchdog (the rule is in its header comment).
 * Start after mgmtd_link_start (0 or -EAGAIN); stop is idempotent and
 * needs s->stopping set. */
int stor_iowatch_start(struct storage_service *s);
void stor_iowatch_stop(struct storage_service *s);
/* Whether T has local engine work in flight for s->io_stall_ms or more:
 * the link thread keeps such a fenced target out. Any thread. */
bool stor_iowatch_stalled(struct storage_service *s, struct stor_target *t);

/* storage_service.c: the CRC check of a write's DATA (M's len bytes)
 * against M's crc, the one pass over the data at a hop. For a write at a
 * page boundary it computes the page CRCs the engine keeps (*PAGE_CRC,
 * malloc'd, the caller's to free; NULL otherwise) and folds them into the
 * piece's CRC. 0 or -CFS_ECHECKSUM (*PAGE_CRC NULL). Thread-safe. */
int stor_write_crc_check(const struct sto_write_req *m, const void *data, uint32_t **page_crc);

/* craq_write.c: chain WRITE / REMOVE (chain != 0). Take REQ, DATA (the
 * aligned bulk buffer) and PAGE_CRC (DATA's page CRCs from the check, or
 * NULL; malloc'd), freed by them. With HOLD, DATA is not ours but lies
 * in that held region of the sender (a forward read in place): the hold
 * is dropped instead of DATA freed. CHECKED: the caller verified DATA's
 * CRC (stor_write_crc_check); false: craq_write checks it itself, after
 * the forward to the successor was sent (docs/rpc.md "Check after
 * forwarding") and before any byte of it reaches this target's disk. */
enum { CHECK_LATE_LOOP = 1, CHECK_LATE_ENGINE = 2 };
struct stor_shm_region;
void craq_write_handle(struct storage_service *s, struct rpc_req *req,
		       const struct sto_write_req *m, void *data, struct stor_shm_region *hold,
		       uint32_t *page_crc, bool checked);
/* WRITE_IF of a chain chunk (M->chain != 0, a replace, CRC checked into
 * PAGE_CRC, admitted): applied only if the chunk's version at this head
 * is EXPECT (STO_WIF_*), else answered -ESTALE. Takes DATA (a stor_buf of
 * M->len bytes) and PAGE_CRC; answers REQ and ends the request. A
 * version comes with the chunk's length and CRC (EXPECT_LEN, _CRC). */
void craq_write_if_handle(struct storage_service *s, struct rpc_req *req,
			  const struct sto_write_req *m, uint64_t expect, uint32_t expect_len,
			  uint32_t expect_crc, void *data, uint32_t *page_crc);
void craq_remove_handle(struct storage_service *s, struct rpc_req *req,
			const struct sto_remove_req *m);
/* TRUNCATE of a chain chunk (M->chain != 0, M->len >= 1), admitted
 * (fence_witness_admit); answers REQ and ends the request itself. */
void craq_truncate_handle(struct storage_service *s, struct rpc_req *req,
			  const struct sto_truncate_req *m);
/* The local-failure rule of pipelined writes: T stops serving at once
 * and reports OFFLINE; it rejoins through startup fencing and resync.
 * Idempotent; any thread. */
void craq_fence_target(struct storage_service *s, struct stor_target *t, const char *why);
/* Checks that TARGET may serve a read of CHAIN now: 0 or -CFS_E*. */
int craq_read_check(struct storage_service *s, uint32_t target, uint32_t chain);

/* craq_list.c: the listing pool. A listing a request waits on (a DUMP's,
 * a head's range remove's) runs there, off the loops and the scheduler
 * thread; each target's jobs in order, one at a time (rules in
 * craq_list.c). */
struct craq_list_job {
	struct stor_target *t;
	void (*run)(struct craq_list_job *j);  /* on a pool thread; ends J */
	void (*drop)(struct craq_list_job *j); /* at the stop instead: ends J, -CFS_EUNAVAIL */
	struct craq_list_job *next;            /* the pool's */
};
/* START once the targets are open: 0 or -EAGAIN (what started is stopped
 * by STOP). STOP, idempotent, after the requests in flight were waited
 * for and before the RPC client, the scheduler and the RPC server are
 * freed (a range remove's RUN starts chain ops): joins the threads (one
 * inside a hung engine call holds it until the call returns; RUN jobs
 * see s->stopping) and DROPs what is still queued. */
int craq_list_start(struct storage_service *s);
void craq_list_stop(struct storage_service *s);
/* Queues J behind J->t's earlier jobs: 0, or -CFS_EUNAVAIL when MAX of
 * them wait already or the pool stops (J is not taken: the caller answers
 * its request). */
int craq_list_queue(struct storage_service *s, struct craq_list_job *j, uint32_t max);

/* craq_resync.c: one worker thread per target syncs that target's
 * SYNCING successor and runs its repairs, so a pass waiting on one hung
 * disk holds back no other target. START (in mgmtd_link_start, before the
 * link thread): 0 or -EAGAIN (what started is stopped by STOP). OFFER
 * (link thread, routing it acted on, unfenced): each worker takes its own
 * reference to SNAP and runs a pass from it, or from a newer offer, once
 * its current pass ended; never waits for a pass. STOP (after the link
 * thread stopped, s->stopping set): joins the workers, so it returns once
 * each pass returned from its current engine or RPC call; idempotent. */
int craq_resync_start(struct storage_service *s);
void craq_resync_offer(struct storage_service *s, struct mgmtd_routing *snap);
void craq_resync_stop(struct storage_service *s);
void craq_sync_done_handle(struct storage_service *s, struct rpc_req *req);
void craq_dump_handle(struct storage_service *s, struct rpc_req *req);

/* craq_repair.c: a chunk that failed its CRC on a read is repaired from
 * another SERVING replica of its chain (design in craq_repair.c). */
struct craq_repair;
struct craq_repair_stats {
	uint64_t corrupt_seen; /* reads that found a corrupt chunk */
	uint64_t repaired;     /* chunks rewritten from a good replica */
	uint64_t failed;       /* chunks given up on (logged) */
	uint64_t dropped;      /* not queued: the target's share of the queue full */
};
/* A queue of MAX chunks (0: the default, 1024) shared by NTARGETS
 * targets, each holding at most its fair share (MAX / NTARGETS). */
struct craq_repair *craq_repair_new(size_t max, size_t ntargets);
void craq_repair_free(struct craq_repair *r);
/* Counts, logs and queues ID of T (any thread, never blocks long). */
void craq_repair_note(struct storage_service *s, struct stor_target *t, uint32_t chain,
		      struct chunk_id id);
/* Repairs queued chunks of T; T's resync worker only (blocking calls). */
void craq_repair_pass(struct storage_service *s, struct stor_target *t, struct mgmtd_routing *snap);
void craq_repair_stats(struct storage_service *s, struct craq_repair_stats *out);

#endif
