/* craq_write.c - chain replication of writes, removes and truncates (3FS's CRAQ).
 *
 * A chain op walks head -> ... -> tail (-> the SYNCING target, if any):
 *
 *   receive ─ check fenced, chain version, role (head: first SERVING;
 *      │      others: SERVING or SYNCING and sent by the predecessor)
 *      │      head only: exactly-once cache hit -> answer the cached reply;
 *      │      a seq below the channel's cached one (a late copy of a
 *      │      request its sender went past) -> -CFS_ESUPERSEDED, nothing
 *      │      applied
 *      v
 *   LOCK the chunk (FIFO; writes to one chunk are serialised at the head
 *      │      and, in the same order, at every replica); a target that
 *      │      fenced itself meanwhile (the op before failed) answers
 *      │      -CFS_EUNAVAIL and applies nothing
 *      v
 *   APPLY in the engine and FORWARD, overlapped (PIPELINED, writes): the
 *      │      head looks v up itself (engine metadata, no disk I/O, no hand-off)
 *      │      and applies exactly u = v + 1 while the same u goes to the
 *      │      successor; the others apply the u they got while forwarding it
 *      │      (a replica that already holds u from an earlier attempt of
 *      │      the same forward answers success). Removes, and writes whose
 *      │      successor needs the whole chunk, apply first, then forward.
 *      v
 *   FORWARD to the successor read from the newest routing; a SYNCING
 *      │      successor gets the whole chunk as a replace (it may lack the
 *      │      old bytes); a successor that answers "conflict" too. Any
 *      │      failure retries every 100 ms, re-reading routing, until the
 *      │      forward deadline (30 s from the LOCK; then FORWARD GIVEN UP
 *      │      below): the client is answered only once the tail has
 *      │      applied, so an acknowledged write is on every replica.
 *      │      A successor on this host gets a write's data through the
 *      │      service's shared-memory arena (SHM_WRITE, sc_shm.h) instead
 *      │      of a bulk; the same request over the socket when it declines.
 *      │      A write that came over shared memory was copied straight
 *      │      into that arena (stor_wbuf_get), so the forward names those
 *      │      bytes: one copy per replica, the one each makes to check
 *      │      the CRC of what it writes. Bytes a forward named that timed
 *      │      out are never reused (the successor may read them late).
 *      v
 *   ANSWER, cache the reply (head, seq != 0), UNLOCK.
 *
 * Pending versions: the engine commits each apply durably at once; the
 * "pending" window of CRAQ is the chunk lock held from APPLY until the
 * successor's answer. A read of a locked chunk, or one whose lock was
 * granted while it read, answers -CFS_ENOT_COMMITTED (storage_service.c),
 * so no reader sees a version the tail has not applied. After a crash the
 * target comes back through resync (startup fencing), which replaces any
 * chunk whose version differs from its predecessor's.
 *
 * Removes travel the same way, one chunk per op: the head turns a remove
 * of a range into one op for each chunk of it that it holds (rm_range),
 * each under that chunk's lock like a write. (One op for the range, under
 * its first chunk's lock only, let a write to another chunk of it reach a
 * successor on the other side of the remove than at the head: a chunk
 * the head removed and a new write created again at version 1 was taken
 * as a repeat by a successor still holding it at a higher version, then
 * deleted there by the late remove: acknowledged, on the head alone.)
 *
 * Truncates (STO_MSG_TRUNCATE, head only) are a chain op of their own at
 * the head: under the chunk's lock it looks the chunk up (no longer than
 * the cut: answered as is, nothing changes), reads the kept prefix from
 * its own copy, and applies it as a replace at the next version; from
 * there it is a replace write: forwarded down the chain at that version,
 * answered once the tail applied it, cached for exactly-once like any
 * write. So a write of the chunk lands wholly before the cut or after it
 * on every replica, and a returning replica gets the shortened chunk
 * from resync like any newer version. (The storage client used to cut a
 * chunk itself: read the prefix from any replica, then send a replace; a
 * write acknowledged between the two was undone by the replace.)
 *
 * LATE CUTS. Meta cuts chunks (a truncate's removes and its one
 * STO_TRUNCATE) for a client's truncate, which the client resends, to
 * the same or another meta instance, when the answer is slow; each run
 * of it cuts, and one run's message may reach the head after another run
 * was answered and the client wrote past the cut: applied then, it
 * would cut acknowledged bytes. So meta sends every cut of one client
 * request under one exactly-once key derived from that request (the
 * client's id and request seq, a channel of that request and kind with
 * bit 63 set: meta_storage.h), not its storage client's own, and the
 * head's cache (checked under the chunk's lock) answers the late copy as
 * the first without applying it. A truncate's -ENOENT
 * (no chunk: a hole) is cached like a success for this: a write may
 * create the chunk after it. Heads before this rule fence the same way
 * but for that -ENOENT; the cache is the head's, in memory and bounded:
 * a late copy reaching a new head (the old one failed or restarted in
 * between) or one whose entry was evicted is applied (docs/posix.md).
 *
 * Conditional writes (STO_MSG_WRITE_IF, head only): a replace whose
 * condition on the chunk (EXPECT: a version with a length and CRC,
 * STO_WIF_ABSENT for "no such chunk", STO_WIF_PRESENT for "any") is
 * checked under the chunk's
 * lock, where the head's copy has no pending update and no other mutation
 * can come in before the apply. A mismatch is answered -ESTALE and cached
 * in the exactly-once cache like a success, so a retry of the request that
 * arrives after the chunk came back to EXPECT (removed and made again)
 * gets the first answer, not a landing. Past the check it is a replace
 * WRITE (applied, then forwarded); the successors never see the
 * condition. A chunk's version only grows while it exists, so "EXPECT
 * still holds" means "nothing changed the chunk since EXPECT was seen"
 * unless it was removed and made again in between up to that version,
 * with the same length and CRC. A chunk made "if absent" may be given
 * its first version by the client (the request's update_ver, 0: 1, as
 * any new chunk): the inline data conversion names a random one far
 * above any count of writes (a nonce), so that a chunk made again by
 * ordinary writes, which starts at 1, never comes back to a state its
 * converter read (docs/inline-data.md "The fence"). Heads before this
 * rule ignore the field and make it at 1.
 *
 * LOCAL FAILURE AFTER THE SUCCESSOR APPLIED (pipelining's rule). When a
 * member's own apply fails (disk error, engine in ERROR) while its forward
 * went through, the successors hold u and it does not. The member FENCES
 * ITSELF before it releases the chunk lock (craq_fence_target): it stops
 * serving reads and writes of every chain at once (target not "started",
 * so craq_read_check and check_role answer -CFS_EUNAVAIL) and reports
 * OFFLINE to mgmtd. It answers its predecessor (or the client) with
 * -CFS_EUNAVAIL, which the client retries on the new head. mgmtd moves it
 * out of the chain; the link thread then treats it like a restarted
 * target (startup fencing, mgmtd_link.c): ONLINE, SYNCING, resynced from
 * its predecessor, SERVING. So no reader is ever served the stale chunk it
 * kept, and the chain converges on u (or on a later write). A failure that
 * leaves nothing to fence (-CFS_ECONFLICT at a non-head: the predecessor
 * resends the whole chunk; -CFS_ECHAIN_VERSION while the forward failed
 * too) is answered as before. A successor whose apply of a forwarded
 * REMOVE fails fences itself the same way: its predecessors removed the
 * chunk; answering the error would have them retry to their deadline and
 * give up, the chunk kept from here on down the chain, where a re-create
 * of it at version 1 is then taken as a repeat.
 *
 * FORWARD GIVEN UP AFTER THE APPLY (the mirror case). A member whose own
 * apply landed but whose forward failed for good (the deadline passed
 * with a successor that neither answered nor left the chain; a
 * successor's -CFS_ECHECKSUM after our own check passed) holds what its
 * successors lack: a version the tail never had, which readers of this
 * member would be served once the lock is released while the tail serves
 * the one before, and which no resync touches while this member serves;
 * or a chunk's removal, after which the head's next range remove lists
 * nothing there and a re-create at version 1 is a "repeat" at the
 * successors, which keep the removed bytes. It fences itself too, before
 * it releases the lock, answers -CFS_EUNAVAIL, and resync gives it its
 * new predecessor's copy. Not when it left the write path or the service
 * stops: it comes back through resync anyway.
 *
 * Every such fence, like one for a full disk below, rejoins after a
 * backoff (without it a disk that fails every apply rejoins, fails the
 * retried op and fences again every 100 ms, and the op never gets past
 * it).
 *
 * A SUCCESSOR THAT HANGS (stor_iowatch.c). The rule above would fence
 * the wrong member when a successor's disk hangs while its process still
 * heartbeats: its apply never ends, so it answers nothing, mgmtd keeps it
 * SERVING, and the healthy predecessor's forward gives up at its deadline
 * after its own apply: the predecessor fences itself and the hung member
 * moves up. So each op's local engine work (apply, and the query or whole
 * chunk read that goes with it) is listed in its target while in flight
 * (o->io), and a target whose oldest such work is older than the I/O
 * watchdog's bound (10 s, a third of the forward deadline) fences itself
 * the same way (backoff included). mgmtd moves it out; the predecessor's
 * next retry, at the latest when its in-flight forward times out (5 s),
 * finds the new successor: done by about 16 s, before its 30 s deadline.
 * The fenced member rejoins only once its stuck work ended. The chunk
 * lock is not the measure: the healthy predecessor holds its own while
 * it waits on the hung successor.
 *
 * CHECK AFTER FORWARDING (CFS_CRAQ_CHECK_LATE=1 or =engine in the
 * service's environment; off by default, docs/rpc.md). The service leaves
 * a chain write's CRC check to us and a member sends its forward without
 * waiting for it; it checks before its own apply (this thread after the
 * send, or the engine with CHUNK_WF_VERIFY), so only checked bytes reach
 * any disk. A successor's -CFS_ECHECKSUM then ends the forward (no retry);
 * a member whose own check failed fences itself only if a successor
 * applied (the forward succeeded), not at the tail or when the forward
 * failed too: then nothing was applied anywhere.
 *
 * A FULL DISK (docs/operations.md "A full disk"). A write the head cannot
 * allocate must fail with -ENOSPC and change nothing: while its
 * filesystem is low on space (chunk_engine_space_low) the head applies
 * BEFORE it forwards, so an -ENOSPC there is answered as is, the target
 * keeps serving and reads go on. Replicas allocate down to a lower floor
 * (CHUNK_WF_FORWARDED), so one about as full as its head takes what the
 * head took. A replica that still cannot (its disk filled by something
 * else) diverged: it fences itself as above, but rejoins only after a
 * backoff (2 s doubling to 60 s per such fence, back to 2 s once it has
 * served 60 s again: stor_nospace_fenced) or once space is back, so a
 * full disk cannot flap its chains (mgmtd_link.c).
 *
 * FAULT INJECTION (tests only). With CFS_FAULTINJ set in the service's
 * environment at start, a pipelined head apply first looks for the file
 * DIR/faultinj_craq_head_apply of its target; if present, it is removed
 * and that apply "fails" with -EIO once the forward has finished, without
 * touching the disk: the head's disk write failed after the successor
 * applied (tests/storage/test_craq.c head_apply_fails). Likewise a file
 * DIR/faultinj_craq_apply_delay holding a number of milliseconds makes
 * the next pipelined apply of that target (any member) start that much
 * later, its forward not (test_craq.c resync_inflight); a file
 * DIR/faultinj_craq_remove_refuse makes the next forwarded remove to that
 * target be answered -CFS_EUNAVAIL (its sender retries in 100 ms) without
 * touching anything (test_craq.c remove_write_order); while a file
 * DIR/faultinj_craq_remove_hold holding a chunk index N is present, every
 * forwarded remove to that target beginning below N is answered so
 * (test_craq.c remove_late_part); while DIR/faultinj_craq_remove_fail is
 * present, the apply of every forwarded remove there fails with -EIO
 * without touching the disk (test_craq.c remove_apply_fails); while
 * DIR/faultinj_craq_write_hold is present, every forwarded write to that
 * target is answered -CFS_EUNAVAIL on arrival (test_craq.c
 * forward_gives_up_write); while DIR/faultinj_craq_apply_hold is
 * present, every pipelined apply of that target waits before it reaches
 * the engine, a disk that hangs (test_craq.c disk_stall_middle); while a
 * file DIR/faultinj_craq_trunc_hold is present, a truncate at that head
 * waits after it read the kept bytes, the chunk locked, and writes
 * DIR/faultinj_craq_trunc_held once (test_craq.c truncate_write_race).
 * CFS_FAULTINJ_FORWARD_DEADLINE_MS beside CFS_FAULTINJ shortens the
 * forward deadline (30 s) to that many milliseconds,
 * CFS_FAULTINJ_IO_STALL_MS the I/O watchdog's bound (10 s).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "storage/stor_fault.h"
#include "storage/stor_shm.h"
#include "storage/storage_int.h"
#include "storage_client/sc_shm.h"

#define FORWARD_DEADLINE_MS 30000
#define FORWARD_RETRY_MS 100
#define FORWARD_TIMEOUT_MS 5000

/* A TRUNCATE becomes a WRITE (a replace of the kept bytes) once the head
 * read them under the chunk's lock. */
enum craq_kind { CRAQ_WRITE, CRAQ_REMOVE, CRAQ_TRUNC };

struct craq_op {
	struct storage_service *s;
	struct stor_target *t;
	struct rpc_req *req;
	enum craq_kind kind;
	struct sto_write_req w;      /* WRITE */
	struct sto_remove_req rm;    /* REMOVE */
	struct chunk_id id;          /* the locked chunk */
	void *data;                  /* WRITE: stor_buf of w.len bytes, or in data_hold */
	struct stor_shm_region *data_hold; /* DATA lies in the sender's region (a
					forward read in place): drop this, do not free it */
	uint32_t *page_crc;          /* WRITE: data's page CRCs (checked), or NULL */
	bool check_late;             /* WRITE: the CRC is checked here, after the forward
					was sent (the service did not check it) */
	bool unchecked;              /* WRITE: ... and that check has not run yet */
	bool no_succ;                /* the forward ended finding no successor (tail) */
	bool left;                   /* ... or finding us out of the write path */
	void *full;                  /* whole chunk for a replace forward: stor_buf */
	uint32_t full_cap;           /* its stor_buf size */
	uint32_t full_len;
	bool want_full;
	bool no_shm;                 /* forward over the socket (shared memory declined) */
	bool data_lost;              /* a forward naming data in our arena timed out: the
					successor may read it late, never reuse it */
	bool head;
	bool locked;
	uint64_t client, channel, seq;
	uint32_t chain;
	struct chunk_op op;
	struct chunk_read_range rr;
	struct craq_waiter waiter;
	struct sto_write_resp wresp;
	uint32_t removed;
	uint64_t deadline_ms;
	int attempts;
	/* PIPELINED: local apply and forward run at once; the last to end
	 * finishes the op. */
	bool pipelined;
	bool fault;                  /* injected: the local apply fails (-EIO) */
	uint32_t apply_delay_ms;     /* injected: the local apply starts that late */
	uint64_t uver;               /* the version applied and forwarded */
	_Atomic int parts;           /* parts still running (2, or 1 with fault) */
	_Atomic int pflags;          /* PL_LOCAL_DONE, PL_FWD_WAITS */
	int local_err, fwd_err;      /* each written by its part before its end */
	struct chunk_info local_info;/* the local apply's result */
	struct rm_job *parent;       /* REMOVE of one chunk of a range at the head */
	struct stor_io_ent io;       /* our local engine work in flight, for the I/O
					watchdog (stor_iowatch.c): apply, query, read */
	bool trunc_held;             /* TRUNC: held by fault injection (reported once) */
	bool cond;                   /* WRITE_IF: a replace only if the version is EXPECT */
	uint64_t expect;             /* ... STO_WIF_*, or a version with this length and CRC: */
	uint32_t expect_len, expect_crc;
};

enum { PL_LOCAL_DONE = 1, PL_FWD_WAITS = 2 };

static void forward(void *arg);
static void fwd_end(struct craq_op *o, int err);
static void fence_diverged(struct craq_op *o, int err, const char *what);
static int forward_gave_up(struct craq_op *o, int err);
static void rm_part_done(struct rm_job *j, int err, uint32_t removed);

/* Finds TARGET in CHAIN of SNAP. Returns its index or -1. */
static int member_pos(const struct route_chain *c, uint32_t target)
{
	for (uint32_t i = 0; i < c->n; i++)
		if (c->m[i].target_id == target)
			return (int)i;
	return -1;
}

static bool receives_writes(enum chain_pub_state ps)
{
	return ps == CHAIN_PS_SERVING || ps == CHAIN_PS_SYNCING;
}

static const char *kind_name(enum craq_kind k)
{
	return k == CRAQ_WRITE ? "write" : k == CRAQ_REMOVE ? "remove" : "truncate";
}

static void reply_err(struct rpc_req *req, int err, const char *what)
{
	char text[160];
	snprintf(text, sizeof(text), "%s: %s", what, cfs_strerror(err));
	rpc_reply_error(req, err, text);
}

static void encode_reply(struct craq_op *o, uint8_t *out, uint32_t *len)
{
	struct buf b;
	buf_init(&b);
	if (o->kind != CRAQ_REMOVE)
		sto_write_resp_encode(&b, &o->wresp);
	else
		sto_remove_resp_encode(&b, &(struct sto_remove_resp){ .removed = o->removed });
	*len = b.len > 64 ? 64 : (uint32_t)b.len;
	memcpy(out, b.data, *len);
	buf_fini(&b);
}

static void op_free(struct craq_op *o)
{
	stor_io_end(o->t, &o->io);
	if (o->data_hold)
		stor_shm_release(o->data_hold);
	else if (o->data && o->data_lost)
		sc_shm_buf_put(o->s->shm, o->data, o->w.len, 1);
	else if (o->data)
		stor_buf_put(o->s, o->data, o->w.len);
	if (o->full)
		stor_buf_put(o->s, o->full, o->full_cap);
	free(o->page_crc);
	free(o);
}

static void finish(struct craq_op *o, int err)
{
	struct storage_service *s = o->s;
	if (o->parent) {
		struct rm_job *j = o->parent;
		uint32_t removed = o->removed;
		if (o->locked)
			craq_unlock(o->t->locks, o->id);
		op_free(o);
		rm_part_done(j, err, removed);
		return;
	}
	if (err) {
		/* A truncate of an absent chunk (a hole), or a refused "only if
		 * absent" or conditional write, is an answer, not a failure. */
		bool refused = err == -EEXIST || (o->cond && err == -ESTALE);
		if (err != -CFS_ECHAIN_VERSION && err != -CFS_ENOT_HEAD &&
		    !(o->kind == CRAQ_TRUNC && err == -ENOENT) && !refused)
			LOG_WARN("craq", "op failed: chain=%u ino=%llu idx=%u err=%s", o->chain,
				 (unsigned long long)o->id.ino, o->id.idx, cfs_strerror(err));
		/* A refused "only if absent" or conditional write is an answer:
		 * a retry of it must not land once the chunk is gone again (a
		 * later remove) or back at the expected version. So is a
		 * truncate's "no such chunk": a late copy must not cut the
		 * chunk a write created since ("Late cuts" at the top). */
		if (((refused && o->kind == CRAQ_WRITE) ||
		     (err == -ENOENT && o->kind == CRAQ_TRUNC)) &&
		    o->head && o->seq)
			craq_dedup_put(s->dedup, o->client, o->chain, o->channel, o->seq, err,
			               (const uint8_t *)"", 0);
		reply_err(o->req, err, kind_name(o->kind));
	} else {
		uint8_t resp[64];
		uint32_t len;
		encode_reply(o, resp, &len);
		if (o->head && o->seq)
			craq_dedup_put(s->dedup, o->client, o->chain, o->channel, o->seq, 0, resp, len);
		rpc_reply(o->req, 0, resp, len);
	}
	if (o->locked)
		craq_unlock(o->t->locks, o->id);
	op_free(o);
	stor_end(s);
}

static bool rm_part_answered(struct craq_op *o);

/* Answers from the exactly-once cache; true if it did (O is finished). */
static bool dedup_answer(struct craq_op *o)
{
	if (o->parent)
		return rm_part_answered(o);
	if (!o->head || !o->seq)
		return false;
	int status;
	uint8_t resp[64];
	uint32_t len;
	int r = craq_dedup_get(o->s->dedup, o->client, o->chain, o->channel, o->seq, &status, resp,
			       &len);
	if (r == DEDUP_MISS)
		return false;
	struct storage_service *s = o->s;
	if (r == DEDUP_STALE) {
		/* A late copy of a request (an attempt that lost the race with
		 * another attempt of it): its sender has since had a later one
		 * answered, so applying this now would undo that one (an old
		 * write's bytes over it, a remove of what it wrote). */
		LOG_INFO("craq", "late duplicate refused: chain=%u client=%llu channel=%llu seq=%llu",
			 o->chain, (unsigned long long)o->client, (unsigned long long)o->channel,
			 (unsigned long long)o->seq);
		reply_err(o->req, -CFS_ESUPERSEDED, kind_name(o->kind));
	} else {
		rpc_reply(o->req, status, resp, len);
	}
	if (o->locked)
		craq_unlock(o->t->locks, o->id);
	op_free(o);
	stor_end(s);
	return true;
}

static void retry_later(struct craq_op *o)
{
	if (atomic_load(&o->s->stopping)) {
		fwd_end(o, -CFS_EUNAVAIL);
		return;
	}
	if (clock_mono_ms() > o->deadline_ms) {
		fwd_end(o, -CFS_EUNAVAIL);
		return;
	}
	craq_sched_after(o->s->sched, FORWARD_RETRY_MS, forward, o);
}

static void fwd_done(void *arg, const struct rpc_result *res)
{
	struct craq_op *o = arg;
	if (res->status == 0) {
		fwd_end(o, 0);
		return;
	}
	o->attempts++;
	if (res->status == -CFS_ECHECKSUM && o->check_late) {
		/* The successor found the bytes we forwarded unchecked not to
		 * match the client's CRC: sending them again fails the same way.
		 * The client re-sends the write. */
		fwd_end(o, res->status);
		return;
	}
	if (o->kind == CRAQ_WRITE && res->status == -CFS_ECONFLICT && !o->want_full) {
		/* The successor lacks the version before ours: send it all. */
		o->want_full = true;
		forward(o);
		return;
	}
	if (o->attempts == 1 || o->attempts % 50 == 0)
		LOG_INFO("craq", "forward retry: chain=%u ino=%llu idx=%u attempt=%d err=%s",
			 o->chain, (unsigned long long)o->id.ino, o->id.idx, o->attempts,
			 cfs_strerror(res->status));
	retry_later(o);
}

/* The forward's answer over shared memory; FALLBACK: send it again over
 * the socket (nothing was applied). */
static void fwd_shm_done(void *arg, const struct rpc_result *res, int fallback)
{
	struct craq_op *o = arg;
	if (fallback) {
		o->no_shm = true;
		forward(o);
		return;
	}
	if ((res->status == -CFS_ETIMEDOUT || res->status == -CFS_ECLOSED) &&
	    sc_shm_buf_owns(o->s->shm, o->data))
		o->data_lost = true;
	fwd_done(o, res);
}

static void full_read_done(struct chunk_op *op)
{
	struct craq_op *o = op->arg;
	stor_io_end(o->t, &o->io);
	int r = op->result < 0 ? op->result : o->rr.result;
	if (r < 0) {
		fwd_end(o, r);
		return;
	}
	o->full_len = (uint32_t)r;
	forward(o);
}

/* Sends O to its successor, or finishes it when we are the tail. Runs on
 * engine, RPC-client or scheduler threads; never blocks. */
static void forward(void *arg)
{
	struct craq_op *o = arg;
	struct storage_service *s = o->s;
	if (atomic_load(&s->stopping)) {
		fwd_end(o, -CFS_EUNAVAIL);
		return;
	}
	struct mgmtd_routing *snap = mgmtd_client_routing(s->mc);
	const struct route_info *ri = snap ? mgmtd_routing_info(snap) : NULL;
	const struct route_chain *c = ri ? route_find_chain(ri, o->chain) : NULL;
	uint32_t me = stor_target_id(s, o->t);
	int pos = c ? member_pos(c, me) : -1;
	if (pos < 0 || !receives_writes(c->m[pos].state)) {
		/* We left the write path: this op cannot complete through us. */
		mgmtd_routing_put(snap);
		o->left = true;
		fwd_end(o, -CFS_ECHAIN_VERSION);
		return;
	}
	int succ = -1;
	for (uint32_t i = (uint32_t)pos + 1; i < c->n; i++)
		if (receives_writes(c->m[i].state)) {
			succ = (int)i;
			break;
		}
	if (succ < 0) {
		mgmtd_routing_put(snap);
		o->no_succ = true;
		fwd_end(o, 0);
		return;
	}
	const struct route_target *st = route_find_target(ri, c->m[succ].target_id);
	const char *addr = st ? stor_node_addr(ri, st->node_id) : NULL;
	if (!addr) {
		mgmtd_routing_put(snap);
		retry_later(o);
		return;
	}
	if (o->kind == CRAQ_WRITE && c->m[succ].state == CHAIN_PS_SYNCING &&
	    !(o->w.flags & STO_WF_REPLACE))
		o->want_full = true;
	if (o->kind == CRAQ_WRITE && o->want_full && !o->full) {
		mgmtd_routing_put(snap);
		/* The whole chunk includes our apply of u: wait for it. */
		if (o->pipelined &&
		    !(atomic_fetch_or(&o->pflags, PL_FWD_WAITS) & PL_LOCAL_DONE))
			return; /* local_end calls forward again */
		if (o->pipelined && o->local_err) {
			fwd_end(o, o->local_err);
			return;
		}
		o->full_cap = o->pipelined ? o->local_info.len : o->wresp.len;
		o->full = stor_buf_get(s, o->full_cap);
		if (!o->full) {
			fwd_end(o, -ENOMEM);
			return;
		}
		o->rr = (struct chunk_read_range){ .id = o->id, .off = 0, .len = o->full_cap,
						   .dst = o->full };
		o->op = (struct chunk_op){ .type = CHUNK_OP_READ, .done = full_read_done, .arg = o,
					   .ranges = &o->rr, .nranges = 1 };
		stor_io_begin(o->t, &o->io);
		chunk_engine_submit(o->t->eng, &o->op);
		return;
	}
	struct buf b;
	buf_init(&b);
	struct rpc_call call = { .timeout_ms = FORWARD_TIMEOUT_MS, .done = fwd_done, .arg = o };
	struct sto_write_req fw = { 0 }; /* the forwarded write (CRAQ_WRITE) */
	if (o->kind == CRAQ_WRITE) {
		struct sto_write_req f = o->w;
		f.target = st->id;
		f.chain_ver = c->version;
		f.update_ver = o->pipelined ? o->uver : o->wresp.commit_ver;
		f.flags |= STO_WF_FORWARDED;
		f.flags &= ~(uint32_t)STO_WF_IF_ABSENT; /* decided here, at the head */
		call.bulk = o->data;
		if (o->want_full) {
			f.flags |= STO_WF_REPLACE;
			f.off = 0;
			f.len = o->full_len;
			f.crc = crc32c(0, o->full, o->full_len);
			call.bulk = o->full;
		}
		call.bulk_len = f.len;
		call.type = STO_MSG_WRITE;
		sto_write_req_encode(&b, &f);
		fw = f;
	} else {
		struct sto_remove_req f = o->rm;
		f.target = st->id;
		f.chain_ver = c->version;
		f.flags |= STO_WF_FORWARDED;
		call.type = STO_MSG_REMOVE;
		sto_remove_req_encode(&b, &f);
	}
	call.payload = b.data;
	call.payload_len = (uint32_t)b.len;
	struct rpc_peer *peer;
	char err[128];
	/* A successor on this host takes the data through our shared-memory
	 * arena (docs/rpc.md "Shared memory"), the rest of the request
	 * unchanged; when that path declines, over the socket as ever. */
	if (o->kind == CRAQ_WRITE && s->shm && !o->no_shm) {
		/* Read before the call: its answer may end and free O on the
		 * arena client's thread before the call returns (ASan caught
		 * the log line below reading o->chain so, on a head's first
		 * forward). */
		uint32_t chain = o->chain;
		if (!sc_shm_write_async(s->shm, addr, &fw, call.bulk, FORWARD_TIMEOUT_MS,
					fwd_shm_done, o)) {
			/* Once per process: shows an operator (and test_storage_shm)
			 * that forwards name their bytes in place. CALL.BULK is only
			 * compared with the arena's range here, never read. */
			static atomic_bool seen;
			if (sc_shm_buf_owns(s->shm, call.bulk) && !atomic_exchange(&seen, true))
				LOG_INFO("craq", "first forward naming its bytes in the arena: chain=%u",
					 chain);
			mgmtd_routing_put(snap);
			buf_fini(&b);
			return;
		}
	}
	/* ADDR lives in the snapshot: a routing change on another thread frees
	 * it once the snapshot is put (ASan caught it as a kill of the head
	 * raced a forward). */
	int rc = rpc_client_peer(s->cli, addr, &peer, err, sizeof(err));
	mgmtd_routing_put(snap);
	if (!rc)
		rc = rpc_call_async(peer, &call);
	buf_fini(&b);
	if (rc) {
		o->attempts++;
		retry_later(o);
	}
}

static void local_end(struct craq_op *o, int err, const struct chunk_info *info);

static void query_done(struct chunk_op *op)
{
	struct craq_op *o = op->arg;
	stor_io_end(o->t, &o->io);
	if (o->pipelined) {
		if (op->result < 0 || op->info.commit_ver < o->w.update_ver) {
			local_end(o, -CFS_ECONFLICT, NULL);
		} else {
			struct chunk_info ci = op->info;
			local_end(o, 0, &ci);
		}
		return;
	}
	if (op->result < 0 || op->info.commit_ver < o->w.update_ver) {
		finish(o, -CFS_ECONFLICT);
		return;
	}
	/* A repeated forward of a version we already applied. */
	o->wresp = (struct sto_write_resp){ .commit_ver = o->w.update_ver, .len = op->info.len,
					    .crc = op->info.crc };
	forward(o);
}

static void applied(struct chunk_op *op)
{
	struct craq_op *o = op->arg;
	stor_io_end(o->t, &o->io);
	if (o->kind == CRAQ_REMOVE) {
		if (op->result < 0 && !o->head) {
			/* Our predecessors removed the chunk and their forward
			 * waits on us: answering the error would have them retry
			 * until their deadline, then give up with the chunk gone
			 * there and kept here and after us (a re-create at
			 * version 1 then taken here as a repeat: the write lost).
			 * Fenced, mgmtd moves us out, their retry reaches our
			 * successor, and resync removes it here. */
			fence_diverged(o, op->result, "apply of a forwarded remove failed");
			finish(o, -CFS_EUNAVAIL);
			return;
		}
		if (op->result < 0) {
			finish(o, op->result);
			return;
		}
		o->removed = (uint32_t)op->result;
		forward(o);
		return;
	}
	if (op->result == -CFS_ECONFLICT && !o->head) {
		o->op = (struct chunk_op){ .type = CHUNK_OP_QUERY, .done = query_done, .arg = o,
					   .id = o->id };
		stor_io_begin(o->t, &o->io);
		chunk_engine_submit(o->t->eng, &o->op);
		return;
	}
	if (op->result < 0) {
		finish(o, op->result);
		return;
	}
	o->wresp = (struct sto_write_resp){ .commit_ver = op->info.commit_ver,
					    .len = op->info.len, .crc = op->info.crc };
	forward(o);
}


/* ---- pipelined writes ---- */

void craq_fence_target(struct storage_service *s, struct stor_target *t, const char *why)
{
	pthread_mutex_lock(&t->state_mu);
	if (!atomic_exchange(&t->started, 0)) {
		pthread_mutex_unlock(&t->state_mu);
		return;
	}
	atomic_fetch_add(&t->fence_gen, 1);
	atomic_store(&t->local_state, CHAIN_LS_OFFLINE);
	pthread_mutex_unlock(&t->state_mu);
	LOG_ERR("craq", "target fenced itself: target=%u why=%s; it rejoins through resync",
		stor_target_id(s, t), why);
	/* States only, touching no engine: the fence of a hung disk must
	 * not wait on anything of it (test_craq.c disk_stall_stat). */
	mgmtd_link_report_state(s);
	mgmtd_link_kick(s);
}

/* This member's state now differs from its successors' (ERR: why): it
 * stops serving before it releases the chunk lock, so no reader sees that
 * state, and rejoins through resync. */
static void fence_diverged(struct craq_op *o, int err, const char *what)
{
	/* Fenced already, by another op of the same incident (a successor
	 * that stopped answering fails every op in flight within one retry
	 * period): that fence's backoff stands. Doubling it per op would take
	 * one incident to the 60 s cap. */
	if (!atomic_load(&o->t->started))
		return;
	char why[128];
	snprintf(why, sizeof(why), "%s (%s)", what, cfs_strerror(err));
	atomic_store(&o->t->fence_failed, err != -ENOSPC);
	stor_nospace_fenced(o->t, clock_mono_ms());
	craq_fence_target(o->s, o->t, why);
}

/* Both parts ended: answer, fencing first where the rule says so. */
static void pl_finish(struct craq_op *o)
{
	int lerr = o->local_err, ferr = o->fwd_err;
	if (!lerr && !ferr) {
		o->wresp = (struct sto_write_resp){ .commit_ver = o->uver, .len = o->local_info.len,
						    .crc = o->local_info.crc };
		finish(o, 0);
		return;
	}
	if (!lerr) {
		finish(o, forward_gave_up(o, ferr));
		return;
	}
	/* A failed CRC check wrote nothing here; with the forward failed too
	 * (the successor's own check) or none to make (the tail), nothing was
	 * applied anywhere. */
	bool nothing_to_fence = (lerr == -CFS_ECONFLICT && !o->head) ||
				(lerr == -CFS_ECHAIN_VERSION && ferr) ||
				(lerr == -CFS_ECHECKSUM && (ferr || o->no_succ));
	if (nothing_to_fence) {
		finish(o, lerr);
		return;
	}
	fence_diverged(o, lerr,
		       ferr ? "local apply failed, forward failed" : "local apply failed, forward applied");
	finish(o, -CFS_EUNAVAIL);
}

/* The forward of an op whose apply landed here ended in ERR: we may hold
 * what our successors lack and nobody would carry it on. Unless we left
 * the write path or the service stops (either way we come back through
 * resync), we fence ourselves (FORWARD GIVEN UP AFTER THE APPLY above).
 * Returns the error to answer. */
static int forward_gave_up(struct craq_op *o, int err)
{
	if (!err || o->left || atomic_load(&o->s->stopping))
		return err;
	fence_diverged(o, err, "forward failed after the apply");
	return -CFS_EUNAVAIL;
}

static void part_end(struct craq_op *o)
{
	if (atomic_fetch_sub(&o->parts, 1) == 1)
		pl_finish(o);
}

/* The forward part ended (tail reached, successor answered, or gave up). */
static void fwd_end(struct craq_op *o, int err)
{
	if (!o->pipelined) {
		/* Forwards follow the apply here. */
		finish(o, forward_gave_up(o, err));
		return;
	}
	o->fwd_err = err;
	part_end(o);
}

/* The local part ended; INFO is the applied chunk's when ERR is 0. */
static void local_end(struct craq_op *o, int err, const struct chunk_info *info)
{
	/* Before PL_LOCAL_DONE: a forward that waited for us reads the chunk
	 * under the same entry. */
	stor_io_end(o->t, &o->io);
	o->local_err = err;
	if (info)
		o->local_info = *info;
	if (atomic_fetch_or(&o->pflags, PL_LOCAL_DONE) & PL_FWD_WAITS)
		forward(o); /* it waited for our apply to send the whole chunk */
	part_end(o);
}

static void pl_applied(struct chunk_op *op)
{
	struct craq_op *o = op->arg;
	if (op->result == -CFS_ECONFLICT && !o->head) {
		o->op = (struct chunk_op){ .type = CHUNK_OP_QUERY, .done = query_done, .arg = o,
					   .id = o->id };
		chunk_engine_submit(o->t->eng, &o->op);
		return;
	}
	struct chunk_info ci = op->info;
	local_end(o, op->result < 0 ? op->result : 0, op->result < 0 ? NULL : &ci);
}

static bool fault_armed(struct craq_op *o)
{
	if (!o->s->faultinj)
		return false;
	char path[4200];
	snprintf(path, sizeof(path), "%s/faultinj_craq_head_apply", o->t->dir);
	return unlink(path) == 0;
}

/* Milliseconds to hold this apply back (fault injection): mostly 0. */
static uint32_t fault_delay(struct craq_op *o)
{
	if (!o->s->faultinj)
		return 0;
	char path[4200];
	snprintf(path, sizeof(path), "%s/faultinj_craq_apply_delay", o->t->dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	unsigned ms = 0;
	if (fscanf(f, "%u", &ms) != 1)
		ms = 0;
	fclose(f);
	return unlink(path) == 0 ? ms : 0;
}

/* The write's CRC check when it was left to us (check_late): 0 or
 * -CFS_ECHECKSUM. Fills o->page_crc. Runs once. */
static int late_check(struct craq_op *o)
{
	if (!o->unchecked)
		return 0;
	o->unchecked = false;
	return stor_write_crc_check(&o->w, o->data, &o->page_crc);
}

/* Whether the apply of this forwarded remove "fails" (fault injection):
 * while DIR/faultinj_craq_remove_fail exists. */
static bool remove_fault(struct craq_op *o)
{
	if (!o->s->faultinj)
		return false;
	char path[4200];
	snprintf(path, sizeof(path), "%s/faultinj_craq_remove_fail", o->t->dir);
	return access(path, F_OK) == 0;
}

/* Whether this apply waits (fault injection: a disk that hangs): while
 * DIR/faultinj_craq_apply_hold exists, never once the service stops. */
static bool apply_held(struct craq_op *o)
{
	if (!o->s->faultinj || atomic_load(&o->s->stopping))
		return false;
	char path[4200];
	snprintf(path, sizeof(path), "%s/faultinj_craq_apply_hold", o->t->dir);
	return access(path, F_OK) == 0;
}

static void pl_submit_later(void *arg);

static void pl_submit(struct craq_op *o)
{
	if (apply_held(o)) {
		craq_sched_after(o->s->sched, 50, pl_submit_later, o);
		return;
	}
	if (o->apply_delay_ms) {
		uint32_t ms = o->apply_delay_ms;
		o->apply_delay_ms = 0;
		craq_sched_after(o->s->sched, ms, pl_submit_later, o);
		return;
	}
	uint32_t fl = ((o->w.flags & STO_WF_REPLACE) ? CHUNK_WF_REPLACE : 0) |
		      ((o->w.flags & STO_WF_NOFLUSH) ? CHUNK_WF_NOFLUSH : 0);
	if (!o->head)
		fl |= CHUNK_WF_FORWARDED;
	if (o->unchecked) {
		/* CHECK_LATE_ENGINE: the engine's I/O thread checks before it
		 * writes anything (CHUNK_WF_VERIFY). */
		fl |= CHUNK_WF_VERIFY;
		o->unchecked = false;
	}
	o->op = (struct chunk_op){ .type = CHUNK_OP_WRITE, .done = pl_applied, .arg = o,
				   .id = o->id, .off = o->w.off, .len = o->w.len,
				   .data = o->data, .update_ver = o->uver,
				   .chain_ver = o->w.chain_ver, .flags = fl,
				   .page_crc = o->page_crc, .data_crc = o->w.crc };
	chunk_engine_submit(o->t->eng, &o->op);
}

static void pl_submit_later(void *arg)
{
	pl_submit(arg);
}

/* Starts the local apply of version U and the forward of it together.
 *
 * CHECK AFTER FORWARDING (CFS_CRAQ_CHECK_LATE, off by default: measured,
 * not proven, docs/rpc.md). The service left the CRC check to us
 * (o->unchecked), so the forward does not wait for it: with "1" this
 * thread sends the forward, then checks, then submits the apply; with
 * "engine" it submits the apply with CHUNK_WF_VERIFY (the engine's I/O
 * thread checks while this one forwards). Either way only checked bytes
 * reach our disk, and each replica checks before its own apply. */
static void pl_start(struct craq_op *o, uint64_t u)
{
	o->pipelined = true;
	o->uver = u;
	o->fault = o->head && fault_armed(o);
	o->apply_delay_ms = fault_delay(o);
	/* Two parts unless injected: then the local apply "failed" without
	 * touching the disk, and the forward's end decides alone. */
	atomic_store(&o->parts, o->fault ? 1 : 2);
	if (o->fault) {
		o->local_err = -EIO;
		atomic_store(&o->pflags, PL_LOCAL_DONE);
		forward(o);
		return;
	}
	stor_io_begin(o->t, &o->io);
	if (o->unchecked && o->s->check_late == CHECK_LATE_LOOP) {
		/* The local part still runs, so O lives until it ends. */
		forward(o);
		int err = late_check(o);
		if (err)
			local_end(o, err, NULL);
		else
			pl_submit(o);
		return;
	}
	pl_submit(o);
	forward(o);
}

/* Head: the chunk's committed version is known (RESULT and INFO of the
 * query); u = v + 1. */
static void head_version(struct craq_op *o, int result, const struct chunk_info *info)
{
	uint64_t v = 0;
	if (result == 0) {
		if (o->w.chain_ver < info->chain_ver) {
			finish(o, -CFS_ECHAIN_VERSION);
			return;
		}
		v = info->commit_ver;
	} else if (result != -ENOENT) {
		finish(o, result);
		return;
	}
	pl_start(o, v + 1);
}

static void trunc_locked(struct craq_op *o);

static void locked(void *arg)
{
	struct craq_op *o = arg;
	o->locked = true;
	/* The forward's time counts from here, not from the request's
	 * arrival: an op queued behind others of its chunk for longer than
	 * the deadline would give up at its first retry, once applied here,
	 * and so fence this member for a successor's passing hiccup. */
	uint32_t dl = o->s->fwd_deadline_ms ? o->s->fwd_deadline_ms : FORWARD_DEADLINE_MS;
	o->deadline_ms = clock_mono_ms() + dl;
	if (dedup_answer(o))
		return;
	if (!atomic_load(&o->t->started)) {
		/* The op before us fenced this target (its apply or its
		 * forward failed): our copy of the chunk is not the chain's.
		 * A head would number its write from it, so the successors,
		 * which hold the failed op's version, could take it as a
		 * repeat and keep the other bytes: acknowledged, and lost.
		 * The sender retries on the chain without us. */
		finish(o, -CFS_EUNAVAIL);
		return;
	}
	if (o->kind == CRAQ_TRUNC) {
		trunc_locked(o);
		return;
	}
	if (o->kind == CRAQ_WRITE && o->head && (o->w.flags & STO_WF_IF_ABSENT)) {
		/* Under the lock the head's copy has no pending update: what it
		 * holds is what the chain will hold before this write. */
		struct chunk_info ci;
		int qr = chunk_engine_query_now(o->t->eng, o->id, &ci);
		if (qr != -ENOENT) {
			finish(o, qr == 0 ? -EEXIST : qr);
			return;
		}
	}
	if (o->kind == CRAQ_WRITE && o->head && o->cond) {
		/* The same place as "only if absent": the version the head
		 * holds here is the chain's, and stays until we unlock. */
		struct chunk_info ci;
		int qr = chunk_engine_query_now(o->t->eng, o->id, &ci);
		if (qr && qr != -ENOENT) {
			finish(o, qr);
			return;
		}
		bool match = o->expect == STO_WIF_PRESENT  ? qr == 0
			     : o->expect == STO_WIF_ABSENT ? qr != 0
			     : qr == 0 && ci.commit_ver == o->expect && ci.len == o->expect_len &&
				       ci.crc == o->expect_crc;
		if (!match) {
			finish(o, -ESTALE);
			return;
		}
	}
	if (o->kind == CRAQ_WRITE && o->head && !(o->w.flags & STO_WF_REPLACE) &&
	    !chunk_engine_space_low(o->t->eng)) {
		/* The version to forward before our own apply assigns it, looked
		 * up on this thread: through the engine's inbox the forward and
		 * the local write would wait for a wake-up of its I/O thread,
		 * and the write for the forward's send besides (pl_start would
		 * run there). Here the engine submits the write on its thread
		 * while this one sends the forward. The chunk lock we hold keeps
		 * every other mutation of the chunk out, so the version stays. */
		struct chunk_info ci;
		int qr = chunk_engine_query_now(o->t->eng, o->id, &ci);
		head_version(o, qr, &ci);
		return;
	}
	if (o->kind == CRAQ_WRITE && !o->head) {
		pl_start(o, o->w.update_ver);
		return;
	}
	if (o->kind == CRAQ_WRITE) {
		/* Apply, then forward: nothing left before the check. */
		int err = late_check(o);
		if (err) {
			finish(o, err);
			return;
		}
		uint32_t fl = ((o->w.flags & STO_WF_REPLACE) ? CHUNK_WF_REPLACE : 0) |
			      ((o->w.flags & STO_WF_NOFLUSH) ? CHUNK_WF_NOFLUSH : 0);
		o->op = (struct chunk_op){ .type = CHUNK_OP_WRITE, .done = applied, .arg = o,
					   .id = o->id, .off = o->w.off, .len = o->w.len,
					   .data = o->data,
					   .update_ver = o->head && !o->cond ? 0 : o->w.update_ver,
					   .chain_ver = o->w.chain_ver, .flags = fl,
					   .page_crc = o->page_crc, .data_crc = o->w.crc };
	} else {
		o->op = (struct chunk_op){ .type = CHUNK_OP_REMOVE, .done = applied, .arg = o,
					   .id = { o->rm.ino, o->rm.begin }, .end_idx = o->rm.end };
		if (!o->head && remove_fault(o)) {
			o->op.result = -EIO;
			applied(&o->op);
			return;
		}
	}
	stor_io_begin(o->t, &o->io);
	chunk_engine_submit(o->t->eng, &o->op);
}

/* Role and version checks against our routing: 0 or the error to answer. */
static int check_role(struct storage_service *s, struct stor_target *t, uint32_t chain,
		      uint32_t chain_ver, bool forwarded)
{
	if (!atomic_load(&t->started))
		return -CFS_EUNAVAIL;
	struct mgmtd_routing *snap = mgmtd_client_routing(s->mc);
	if (!snap)
		return -CFS_EUNAVAIL;
	const struct route_chain *c = route_find_chain(mgmtd_routing_info(snap), chain);
	int err = 0;
	int pos = c ? member_pos(c, stor_target_id(s, t)) : -1;
	if (!c || pos < 0 || c->version != chain_ver)
		err = -CFS_ECHAIN_VERSION;
	else if (!forwarded && (pos != 0 || c->m[0].state != CHAIN_PS_SERVING))
		err = -CFS_ENOT_HEAD;
	else if (forwarded && !receives_writes(c->m[pos].state))
		err = -CFS_ECHAIN_VERSION;
	mgmtd_routing_put(snap);
	return err;
}

static void start(struct craq_op *o)
{
	if (dedup_answer(o))
		return;
	o->waiter = (struct craq_waiter){ .fn = locked, .arg = o };
	if (craq_lock(o->t->locks, o->id, &o->waiter))
		locked(o);
}

/* The target a request for TARGET names, checked for its role in CHAIN
 * at CHAIN_VER (check_role): 0 with *TP set, or the error to answer. */
static int request_target(struct storage_service *s, uint32_t target, uint32_t chain,
			  uint32_t chain_ver, bool forwarded, struct stor_target **tp)
{
	struct stor_target *t = stor_target_by_id(s, target);
	*tp = t;
	if (!s->mc)
		return -EINVAL;
	if (!t)
		return -ENODEV;
	return check_role(s, t, chain, chain_ver, forwarded);
}

/* A new op of KIND answering REQ on T for chunk ID of CHAIN, which came
 * under the exactly-once key (CLIENT, CHANNEL, SEQ); HEAD: we head the
 * chain for it. The caller fills the kind's own fields and start()s it. */
static struct craq_op *op_new(struct storage_service *s, struct stor_target *t,
			      struct rpc_req *req, enum craq_kind kind, struct chunk_id id,
			      bool head, uint32_t chain, uint64_t client, uint64_t channel,
			      uint64_t seq)
{
	struct craq_op *o = xcalloc(1, sizeof(*o));
	o->s = s;
	o->t = t;
	o->req = req;
	o->kind = kind;
	o->id = id;
	o->head = head;
	o->chain = chain;
	o->client = client;
	o->channel = channel;
	o->seq = seq;
	return o;
}

/* Ends a write request refused before it became an op: its payload
 * (DATA in our pool, or in the sender's region HOLD) and page CRCs go. */
static void write_refused(struct storage_service *s, struct rpc_req *req,
			  const struct sto_write_req *m, void *data, struct stor_shm_region *hold,
			  uint32_t *page_crc, int err, const char *what)
{
	free(page_crc);
	if (hold)
		stor_shm_release(hold);
	else
		stor_buf_put(s, data, m->len);
	reply_err(req, err, what);
	stor_end(s);
}

void craq_write_if_handle(struct storage_service *s, struct rpc_req *req,
			  const struct sto_write_req *m, uint64_t expect, uint32_t expect_len,
			  uint32_t expect_crc, void *data, uint32_t *page_crc)
{
	struct stor_target *t;
	int err = request_target(s, m->target, m->chain, m->chain_ver, false, &t);
	if (err) {
		write_refused(s, req, m, data, NULL, page_crc, err, "write_if");
		return;
	}
	struct craq_op *o = op_new(s, t, req, CRAQ_WRITE, (struct chunk_id){ m->ino, m->idx },
				   true, m->chain, m->client, m->channel, m->seq);
	o->w = *m;
	o->data = data;
	o->page_crc = page_crc;
	o->cond = true;
	o->expect = expect;
	o->expect_len = expect_len;
	o->expect_crc = expect_crc;
	start(o);
}

void craq_write_handle(struct storage_service *s, struct rpc_req *req,
		       const struct sto_write_req *m, void *data, struct stor_shm_region *hold,
		       uint32_t *page_crc, bool checked)
{
	struct stor_target *t;
	bool fwd = (m->flags & STO_WF_FORWARDED) != 0;
	int err = request_target(s, m->target, m->chain, m->chain_ver, fwd, &t);
	if (!err && s->faultinj && fwd) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/faultinj_craq_write_hold", t->dir);
		if (access(path, F_OK) == 0)
			err = -CFS_EUNAVAIL;
	}
	if (err && !checked) {
		/* Refused anyway: a CRC error still comes first, as when the
		 * service checked it before us. */
		int cerr = stor_write_crc_check(m, data, &page_crc);
		err = cerr ? cerr : err;
	}
	if (err) {
		write_refused(s, req, m, data, hold, page_crc, err, "write");
		return;
	}
	struct craq_op *o = op_new(s, t, req, CRAQ_WRITE, (struct chunk_id){ m->ino, m->idx },
				   !fwd, m->chain, m->client, m->channel, m->seq);
	o->w = *m;
	o->data = data;
	o->data_hold = hold;
	o->page_crc = page_crc;
	o->check_late = o->unchecked = !checked;
	start(o);
}

/* ---- removes of a range (head) ----
 * The head removes a range of chunks as one chain op per chunk it holds,
 * each under that chunk's lock, so every replica orders it against the
 * writes of that chunk as the head did (before, one op locked only the
 * range's first chunk: a write to another chunk could reach a successor
 * on the wrong side of it). A chunk the head does not hold when it lists
 * them is not removed anywhere: a write creating it then comes after the
 * remove on every replica alike. At most RM_WINDOW chunks at once.
 * The listing runs on the listing pool (craq_list.c), not on the
 * scheduler thread that runs every target's forward retries and held
 * truncates: a head whose disk hangs while listing held all of them
 * (test_craq.c rm_hung_sibling). It counts as local engine work for the
 * I/O watchdog, so such a head fences itself and the client's retry goes
 * to the next head. At most RM_QUEUE_MAX of a target's range removes
 * wait behind its running listing; more are refused with -CFS_EUNAVAIL,
 * which the client retries. */
#define RM_WINDOW    64
#define RM_QUEUE_MAX 64

struct rm_job {
	struct craq_list_job lj; /* first: the pool's job is the rm_job */
	struct storage_service *s;
	struct stor_target *t;
	struct rpc_req *req;
	struct sto_remove_req m;
	struct chunk_id *ids;
	size_t n, cap;
	pthread_mutex_t mu;
	size_t started, done; /* under mu */
	uint32_t removed;     /* under mu */
	int err;              /* under mu: the first part's error */
	struct stor_io_ent io; /* the listing, for the I/O watchdog */
};

/* A chunk op of a range whose remove another attempt already had
 * answered (a retry that overtook this one in the window): its sender may
 * have gone on and written the chunk anew since, so it must not be
 * removed. Checked once the op holds the chunk's lock: an answer given
 * before a write the lock let in first is in the cache by then. True if
 * so (O is finished, its job told -CFS_ESUPERSEDED). */
static bool rm_part_answered(struct craq_op *o)
{
	const struct sto_remove_req *m = &o->parent->m;
	if (!m->seq)
		return false;
	int status;
	uint8_t resp[64];
	uint32_t len;
	if (craq_dedup_get(o->s->dedup, m->client, m->chain, m->channel, m->seq, &status, resp,
			   &len) == DEDUP_MISS)
		return false;
	finish(o, -CFS_ESUPERSEDED);
	return true;
}

static int rm_collect(void *arg, struct chunk_id id, const struct chunk_info *info)
{
	(void)info;
	struct rm_job *j = arg;
	if (j->n == j->cap) {
		j->cap = j->cap ? j->cap * 2 : 64;
		j->ids = xrealloc(j->ids, j->cap * sizeof(*j->ids));
	}
	j->ids[j->n++] = id;
	return 0;
}

static void rm_finish(struct rm_job *j)
{
	struct storage_service *s = j->s;
	int status;
	uint8_t resp[64];
	uint32_t len;
	if (j->err == -CFS_ESUPERSEDED &&
	    craq_dedup_get(s->dedup, j->m.client, j->m.chain, j->m.channel, j->m.seq, &status,
			   resp, &len) == DEDUP_HIT) {
		/* Another attempt of this request did it: its answer. */
		rpc_reply(j->req, status, resp, len);
	} else if (j->err) {
		reply_err(j->req, j->err, "remove");
	} else {
		struct buf b;
		buf_init(&b);
		sto_remove_resp_encode(&b, &(struct sto_remove_resp){ .removed = j->removed });
		if (j->m.seq && b.len <= 64)
			craq_dedup_put(s->dedup, j->m.client, j->m.chain, j->m.channel, j->m.seq, 0,
				       b.data, (uint32_t)b.len);
		rpc_reply(j->req, 0, b.data, (uint32_t)b.len);
		buf_fini(&b);
	}
	pthread_mutex_destroy(&j->mu);
	free(j->ids);
	free(j);
	stor_end(s);
}

static void rm_part_start(struct rm_job *j, size_t i)
{
	/* no request or key: the range's reply is cached, not the parts' */
	struct craq_op *o = op_new(j->s, j->t, NULL, CRAQ_REMOVE, j->ids[i], true, j->m.chain, 0,
				   0, 0);
	o->rm = j->m;
	o->rm.begin = j->ids[i].idx;
	o->rm.end = j->ids[i].idx + 1;
	o->rm.seq = 0;
	o->parent = j;
	start(o);
}

/* Starts parts while the window has room; finishes J after the last. */
static void rm_part_done(struct rm_job *j, int err, uint32_t removed)
{
	pthread_mutex_lock(&j->mu);
	j->done++;
	j->removed += removed;
	if (err && !j->err)
		j->err = err;
	size_t next = !j->err && j->started < j->n ? j->started++ : SIZE_MAX;
	bool last = next == SIZE_MAX && j->done == j->started;
	pthread_mutex_unlock(&j->mu);
	if (next != SIZE_MAX)
		rm_part_start(j, next);
	else if (last)
		rm_finish(j);
}

/* On a pool thread: the metadata scan must not run on a loop. Once the
 * service stops, no part starts (the RPC client and the scheduler they
 * use go next). */
static void rm_list(struct craq_list_job *lj)
{
	struct rm_job *j = (struct rm_job *)lj;
	stor_io_begin(j->t, &j->io);
	/* Fault injection: the listing held while the file exists, as by a
	 * disk that hangs (test_craq.c rm_hung_sibling). */
	stor_fault_hold(j->s, j->t, "faultinj_rm_list_hold");
	int rc = -CFS_EUNAVAIL;
	if (!atomic_load(&j->s->stopping))
		rc = chunk_engine_iterate(j->t->eng, (struct chunk_id){j->m.ino, j->m.begin},
		                          (struct chunk_id){j->m.ino, j->m.end}, rm_collect, j);
	stor_io_end(j->t, &j->io);
	/* The chunk ops run as head ops: applied here, then forwarded to our
	 * successors. While the listing waited or ran (a slow disk, the
	 * jobs queued before it), this target may have left the chain and
	 * come back at its end (a fence, 2 s of backoff): ops started then
	 * would remove the chunks here alone and answer the remove as done
	 * (test_craq.c rm_stale_head). Only a head at the remove's chain
	 * version starts them; else the client retries at the head it finds
	 * in newer routing. */
	if (rc >= 0 && j->n && !atomic_load(&j->s->stopping))
		rc = check_role(j->s, j->t, j->m.chain, j->m.chain_ver, false);
	if (rc < 0 || j->n == 0 || atomic_load(&j->s->stopping)) {
		j->err = rc < 0 ? rc : atomic_load(&j->s->stopping) ? -CFS_EUNAVAIL : 0;
		rm_finish(j);
		return;
	}
	pthread_mutex_lock(&j->mu);
	size_t k = j->n < RM_WINDOW ? j->n : RM_WINDOW;
	j->started = k;
	pthread_mutex_unlock(&j->mu);
	for (size_t i = 0; i < k; i++)
		rm_part_start(j, i);
}

static void rm_drop(struct craq_list_job *lj)
{
	struct rm_job *j = (struct rm_job *)lj;
	j->err = -CFS_EUNAVAIL;
	rm_finish(j);
}

/* A head's remove of more than one chunk; false: not ours (the op as ever). */
static bool rm_range(struct storage_service *s, struct stor_target *t, struct rpc_req *req,
		     const struct sto_remove_req *m)
{
	if ((m->flags & STO_WF_FORWARDED) || m->end - m->begin <= 1)
		return false;
	if (m->seq) {
		int status;
		uint8_t resp[64];
		uint32_t len;
		int r = craq_dedup_get(s->dedup, m->client, m->chain, m->channel, m->seq, &status,
				       resp, &len);
		if (r != DEDUP_MISS) {
			if (r == DEDUP_HIT)
				rpc_reply(req, status, resp, len);
			else
				reply_err(req, -CFS_ESUPERSEDED, "remove");
			stor_end(s);
			return true;
		}
	}
	struct rm_job *j = xcalloc(1, sizeof(*j));
	j->s = s;
	j->t = t;
	j->req = req;
	j->m = *m;
	j->lj = (struct craq_list_job){.t = t, .run = rm_list, .drop = rm_drop};
	pthread_mutex_init(&j->mu, NULL);
	if (craq_list_queue(s, &j->lj, RM_QUEUE_MAX)) {
		/* The head's listings are stuck (a hung disk): the client
		 * retries, at the next head once this one fenced itself. */
		j->err = -CFS_EUNAVAIL;
		rm_finish(j);
	}
	return true;
}

void craq_remove_handle(struct storage_service *s, struct rpc_req *req,
			const struct sto_remove_req *m)
{
	struct stor_target *t;
	int err = request_target(s, m->target, m->chain, m->chain_ver,
				 (m->flags & STO_WF_FORWARDED) != 0, &t);
	if (!err && s->faultinj && (m->flags & STO_WF_FORWARDED)) {
		/* Fault injection: refuse the next forwarded remove once. */
		char path[4200];
		snprintf(path, sizeof(path), "%s/faultinj_craq_remove_refuse", t->dir);
		if (unlink(path) == 0)
			err = -CFS_EUNAVAIL;
		unsigned below = 0;
		snprintf(path, sizeof(path), "%s/faultinj_craq_remove_hold", t->dir);
		FILE *f = err ? NULL : fopen(path, "r");
		if (f) {
			if (fscanf(f, "%u", &below) == 1 && m->begin < below)
				err = -CFS_EUNAVAIL;
			fclose(f);
		}
	}
	if (err) {
		reply_err(req, err, "remove");
		stor_end(s);
		return;
	}
	if (rm_range(s, t, req, m))
		return;
	struct craq_op *o = op_new(s, t, req, CRAQ_REMOVE, (struct chunk_id){ m->ino, m->begin },
				   !(m->flags & STO_WF_FORWARDED), m->chain, m->client, m->channel,
				   m->seq);
	o->rm = *m;
	start(o);
}

/* ---- truncates (head) ----
 * See "Truncates" at the top. The head holds the chunk's lock from its
 * look at the chunk to the tail's answer, so no write of the chunk lands
 * between the read of the kept bytes and the replace that puts them back
 * (the cut a client made as a read then a replace lost a write
 * acknowledged in between), and the bytes it keeps are the newest
 * committed ones: under the lock the head's copy has no pending update. */

/* Fault injection: while DIR/faultinj_craq_trunc_hold exists, a truncate
 * that read its kept bytes waits before it applies them, holding the
 * chunk's lock; it writes DIR/faultinj_craq_trunc_held once it waits. */
static bool trunc_hold(struct craq_op *o)
{
	if (!o->s->faultinj || atomic_load(&o->s->stopping))
		return false;
	char path[4200];
	snprintf(path, sizeof(path), "%s/faultinj_craq_trunc_hold", o->t->dir);
	if (access(path, F_OK) != 0)
		return false;
	if (!o->trunc_held) {
		o->trunc_held = true;
		snprintf(path, sizeof(path), "%s/faultinj_craq_trunc_held", o->t->dir);
		FILE *f = fopen(path, "w");
		if (f)
			fclose(f);
	}
	return true;
}

/* Applies the kept bytes as a replace at the next version; from here the
 * op is a replace WRITE (applied, then forwarded: craq_write's path). */
static void trunc_apply(void *arg)
{
	struct craq_op *o = arg;
	if (trunc_hold(o)) {
		craq_sched_after(o->s->sched, 20, trunc_apply, o);
		return;
	}
	o->kind = CRAQ_WRITE;
	o->op = (struct chunk_op){ .type = CHUNK_OP_WRITE, .done = applied, .arg = o,
				   .id = o->id, .off = 0, .len = o->w.len, .data = o->data,
				   .chain_ver = o->w.chain_ver, .flags = CHUNK_WF_REPLACE,
				   .data_crc = o->w.crc };
	stor_io_begin(o->t, &o->io);
	chunk_engine_submit(o->t->eng, &o->op);
}

static void trunc_read_done(struct chunk_op *op)
{
	struct craq_op *o = op->arg;
	stor_io_end(o->t, &o->io);
	int r = op->result < 0 ? op->result : o->rr.result;
	if (r < 0) {
		finish(o, r);
		return;
	}
	if ((uint32_t)r != o->w.len) {
		/* The lock keeps every mutation out, so the chunk is as long as
		 * the lookup said; anything else is not ours to guess at. */
		finish(o, -EIO);
		return;
	}
	o->w.crc = o->rr.crc;
	trunc_apply(o);
}

/* Under the chunk's lock: a no-op when the chunk is no longer than the
 * cut, else reads the kept bytes. */
static void trunc_locked(struct craq_op *o)
{
	struct chunk_info ci;
	int qr = chunk_engine_query_now(o->t->eng, o->id, &ci);
	if (qr) {
		finish(o, qr);
		return;
	}
	if (o->w.chain_ver < ci.chain_ver) {
		finish(o, -CFS_ECHAIN_VERSION);
		return;
	}
	if (ci.len <= o->w.len) {
		o->wresp = (struct sto_write_resp){ .commit_ver = ci.commit_ver, .len = ci.len,
						    .crc = ci.crc };
		finish(o, 0);
		return;
	}
	o->data = stor_buf_get(o->s, o->w.len);
	if (!o->data) {
		finish(o, -ENOMEM);
		return;
	}
	o->rr = (struct chunk_read_range){ .id = o->id, .off = 0, .len = o->w.len,
					   .dst = o->data };
	o->op = (struct chunk_op){ .type = CHUNK_OP_READ, .done = trunc_read_done, .arg = o,
				   .ranges = &o->rr, .nranges = 1 };
	stor_io_begin(o->t, &o->io);
	chunk_engine_submit(o->t->eng, &o->op);
}

void craq_truncate_handle(struct storage_service *s, struct rpc_req *req,
			  const struct sto_truncate_req *m)
{
	struct stor_target *t;
	int err = request_target(s, m->target, m->chain, m->chain_ver, false, &t);
	if (err) {
		reply_err(req, err, "truncate");
		stor_end(s);
		return;
	}
	struct craq_op *o = op_new(s, t, req, CRAQ_TRUNC, (struct chunk_id){ m->ino, m->idx }, true,
				   m->chain, m->client, m->channel, m->seq);
	/* The replace it becomes: off 0, LEN kept bytes (CRC once read). */
	o->w = (struct sto_write_req){ .target = m->target, .chain = m->chain,
				       .chain_ver = m->chain_ver, .ino = m->ino, .idx = m->idx,
				       .off = 0, .len = m->len, .flags = STO_WF_REPLACE,
				       .client = m->client, .channel = m->channel,
				       .seq = m->seq };
	start(o);
}

int craq_read_check(struct storage_service *s, uint32_t target, uint32_t chain)
{
	struct stor_target *t = stor_target_by_id(s, target);
	if (!s->mc || !t)
		return -ENODEV;
	if (!atomic_load(&t->started))
		return -CFS_EUNAVAIL;
	struct mgmtd_routing *snap = mgmtd_client_routing(s->mc);
	if (!snap)
		return -CFS_EUNAVAIL;
	const struct route_chain *c = route_find_chain(mgmtd_routing_info(snap), chain);
	int pos = c ? member_pos(c, target) : -1;
	int err = (pos >= 0 && c->m[pos].state == CHAIN_PS_SERVING) ? 0 : -CFS_ECHAIN_VERSION;
	mgmtd_routing_put(snap);
	return err;
}
