/* storage_service.c - the storage service's RPC front: target table,
 * handlers for the storage messages, and the standalone (chain 0) paths;
 * the target registry and request buffers are in storage_targets.c.
 *
 * Handlers run on RPC loop threads and never block: each decodes, checks,
 * submits one engine op and returns; the engine's completion callback
 * (an engine thread) encodes the reply and calls rpc_reply. Write bulk is
 * received straight into a 4 KiB-aligned buffer (bulk_dest) that the
 * engine then writes without a copy; read replies are sent from the
 * aligned buffer the engine filled (rpc_reply_bulk frees it when sent).
 * Reads run to completion on the loop thread that received them: the
 * thread looks the ranges up (chunk_engine_read_prep), queues them on its
 * own io_uring (stor_ring.c; sent once per loop iteration for all the
 * requests of one wake-up, or at 8 queued), reaps the completions in its
 * loop, checks the CRCs (chunk_engine_read_end) and replies from there,
 * without a hand-off to the engine's I/O thread and back. Requests of
 * more than STOR_RING_MAX_BYTES, and any when no ring can be made or it is
 * full, go through the engine's inbox.
 *
 * SHM_WRITE (a same-host client or chain predecessor, docs/rpc.md "Shared
 * memory") names the data in the sender's registered region instead of
 * sending a bulk: the handler copies it once into a buffer of ours, and
 * from there it is a WRITE.
 *
 * Requests naming a chain (chain != 0) go to craq_write.c; reads of a
 * chain check with craq that the target serves it and that the chunk has
 * no update in flight (before and after the disk read: a write granted
 * the chunk lock in between makes the answer "not committed").
 *
 * Invariants: every request is replied to exactly once; a buffer given by
 * bulk_dest is freed by whoever ends the request (handler path or
 * bulk_drop). A fenced service (mgmtd unreachable for fence_ms, and a
 * chain peer that still reaches it or cannot be asked: fence_witness.c)
 * answers every storage request with -CFS_EFENCED.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "storage/chunk_buf.h"
#include "storage/chunk_crc.h"
#include "storage/chunk_fixed.h"
#include "storage/storage_int.h"
#include "storage/stor_ring.h"
#include "storage/stor_sc.h"
#include "storage/stor_shm.h"
#include "storage_client/sc_shm.h"

#define PAGE 4096u
#define STOR_RING_MAX_BYTES (256u << 10) /* reads of a request answered on the loop thread */
#define ALIGN4K(x) (((uint64_t)(x) + PAGE - 1) & ~(uint64_t)(PAGE - 1))

static void reply_err(struct rpc_req *req, int err, const char *what)
{
	char text[160];
	snprintf(text, sizeof(text), "%s: %s", what, cfs_strerror(err));
	rpc_reply_error(req, err, text);
}

/* ---- WRITE ---- */

static void *write_bulk_dest(struct rpc_req *req, uint64_t bulk_len, void *arg)
{
	(void)req;
	if (bulk_len > CHUNK_MAX_SIZE)
		return NULL;
	return stor_buf_get(arg, bulk_len);
}

static void write_bulk_drop(struct rpc_req *req, void *mem, void *arg)
{
	uint64_t len;
	rpc_req_bulk(req, &len);
	stor_buf_put(arg, mem, len);
}

/* The request's bulk, a buffer of ours (stor_buf_put with *LEN), or NULL:
 * none came, or it did not fit one of ours (oversize, out of memory) and
 * the server's own buffer is dropped here. */
static void *own_bulk(struct rpc_req *req, uint64_t *len)
{
	void *theirs = rpc_req_take_bulk(req, len);
	if (theirs) {
		free(theirs);
		*len = 0;
		return NULL;
	}
	void *mine = (void *)rpc_req_bulk(req, len);
	if (!mine)
		*len = 0;
	return mine;
}

struct direct_write {
	struct chunk_op op;
	struct storage_service *s;
	struct rpc_req *req;
	void *data;      /* stor_buf of len bytes */
	uint64_t len;
	uint32_t *page_crc; /* data's page CRCs, or NULL */
};

static void direct_write_done(struct chunk_op *op)
{
	struct direct_write *w = op->arg;
	if (op->result < 0) {
		reply_err(w->req, op->result, "write");
	} else {
		struct sto_write_resp r = { .commit_ver = op->info.commit_ver,
					    .len = op->info.len, .crc = op->info.crc };
		uint8_t tmp[32];
		struct buf b = { tmp, 0, sizeof(tmp) };
		sto_write_resp_encode(&b, &r);
		rpc_reply(w->req, 0, b.data, (uint32_t)b.len);
		if (b.data != tmp)
			buf_fini(&b);
	}
	struct storage_service *s = w->s;
	stor_buf_put(s, w->data, w->len);
	free(w->page_crc);
	free(w);
	stor_end(s);
}

/* The checks of a write's request that need no pass over its data:
 * 0 or the error to answer. */
static int write_args_check(const struct sto_write_req *m, const void *data, uint64_t bulk_len)
{
	if (m->len == 0 || m->len != bulk_len || !data)
		return -EINVAL;
	if ((uint64_t)m->off + m->len > CHUNK_MAX_SIZE)
		return -EINVAL;
	if ((m->flags & STO_WF_REPLACE) && m->off != 0)
		return -EINVAL;
	return 0;
}

int stor_write_crc_check(const struct sto_write_req *m, const void *data, uint32_t **page_crc)
{
	*page_crc = NULL;
	uint32_t *pc = m->off % PAGE == 0 ? malloc(4 * (size_t)chunk_npages(m->len)) : NULL;
	uint32_t crc = pc ? chunk_crc_pages(data, m->len, pc) : crc32c(0, data, m->len);
	if (crc != m->crc) {
		free(pc);
		return -CFS_ECHECKSUM;
	}
	*page_crc = pc;
	return 0;
}

/* Gives back a write's DATA: our buffer, or the hold on the sender's
 * region it lies in (HOLD). */
static void data_put(struct storage_service *s, void *data, uint64_t blen,
		     struct stor_shm_region *hold)
{
	if (hold)
		stor_shm_release(hold);
	else
		stor_buf_put(s, data, blen);
}

/* A decoded write M whose data (BLEN bytes, a stor_buf or NULL; or, with
 * HOLD, a chain forward's bytes in that held region of the sender) is
 * here: checks and submits it (direct or chain); ends REQ one way or
 * another. */
static void write_submit(struct rpc_req *req, struct storage_service *s,
			 const struct sto_write_req *mp, void *data, uint64_t blen,
			 struct stor_shm_region *hold)
{
	struct sto_write_req m = *mp;
	int err;
	if ((err = fence_witness_admit(s))) {
		data_put(s, data, blen, hold);
		reply_err(req, err, "write");
		return;
	}
	uint32_t *page_crc = NULL;
	/* With CFS_CRAQ_CHECK_LATE a chain write's CRC is checked by
	 * craq_write once its forward is on its way (docs/rpc.md "Check
	 * after forwarding"). */
	bool check_now = !m.chain || !s->check_late;
	if ((err = write_args_check(&m, data, blen)) ||
	    (check_now && (err = stor_write_crc_check(&m, data, &page_crc)))) {
		data_put(s, data, blen, hold);
		reply_err(req, err, "write");
		stor_end(s);
		return;
	}
	if (m.chain) {
		craq_write_handle(s, req, &m, data, hold, page_crc, check_now);
		return;
	}
	if (hold) { /* not reached: only chain forwards are read in place */
		free(page_crc);
		data_put(s, data, blen, hold);
		reply_err(req, -EINVAL, "write: in place");
		stor_end(s);
		return;
	}
	struct stor_target *t = stor_target_by_id(s, m.target);
	if (!t || s->mc) {
		free(page_crc);
		stor_buf_put(s, data, blen);
		reply_err(req, t ? -CFS_ECHAIN_VERSION : -ENODEV, "write: target");
		stor_end(s);
		return;
	}
	struct direct_write *w = xcalloc(1, sizeof(*w));
	w->s = s;
	w->req = req;
	w->data = data;
	w->len = blen;
	w->page_crc = page_crc;
	w->op = (struct chunk_op){ .type = CHUNK_OP_WRITE, .done = direct_write_done, .arg = w,
				   .id = { m.ino, m.idx }, .off = m.off, .len = m.len,
				   .data = data, .update_ver = m.update_ver,
				   .chain_ver = m.chain_ver,
				   .flags = ((m.flags & STO_WF_REPLACE) ? CHUNK_WF_REPLACE : 0) |
					    ((m.flags & STO_WF_NOFLUSH) ? CHUNK_WF_NOFLUSH : 0),
				   .page_crc = page_crc, .data_crc = m.crc };
	chunk_engine_submit(t->eng, &w->op);
}

static void handle_write(struct rpc_req *req, void *arg)
{
	struct storage_service *s = arg;
	struct sto_write_req m;
	uint32_t plen;
	uint64_t blen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	void *data = own_bulk(req, &blen);
	if (sto_write_req_decode(p, plen, &m)) {
		stor_buf_put(s, data, blen);
		reply_err(req, -CFS_EPROTO, "write: malformed request");
		return;
	}
	write_submit(req, s, &m, data, blen, NULL);
}

/* WRITE_IF: a replace on a condition on the chunk's version, at a chain's
 * head only (craq_write.c "Conditional writes"). Over the socket; its CRC
 * is checked here, before the lock. */
static void handle_write_if(struct rpc_req *req, void *arg)
{
	struct storage_service *s = arg;
	struct sto_write_if_req m;
	uint32_t plen;
	uint64_t blen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	void *data = own_bulk(req, &blen);
	if (sto_write_if_req_decode(p, plen, &m)) {
		stor_buf_put(s, data, blen);
		reply_err(req, -CFS_EPROTO, "write_if: malformed request");
		return;
	}
	int err = fence_witness_admit(s);
	if (err) {
		stor_buf_put(s, data, blen);
		reply_err(req, err, "write_if");
		return;
	}
	struct sto_write_req w = { .target = m.target, .chain = m.chain, .chain_ver = m.chain_ver,
				   .ino = m.ino, .idx = m.idx, .off = m.off, .len = m.len,
				   .crc = m.crc, .flags = (m.flags & STO_WF_NOFLUSH) | STO_WF_REPLACE,
				   .client = m.client, .channel = m.channel, .seq = m.seq };
	/* A chunk made "if absent" takes the version the client named
	 * (craq_write.c "Conditional writes": the placeholder's nonce); a
	 * write of an existing chunk is numbered by the head as ever. */
	if (m.expect == STO_WIF_ABSENT)
		w.update_ver = m.update_ver;
	uint32_t *page_crc = NULL;
	/* Never a forward: the successors get a plain replace WRITE. */
	if (!m.chain || (m.flags & (STO_WF_FORWARDED | STO_WF_SYNC)) ||
	    w.update_ver > STO_WIF_CREATE_VER_MAX)
		err = -EINVAL;
	if (!err)
		err = write_args_check(&w, data, blen);
	if (!err)
		err = stor_write_crc_check(&w, data, &page_crc);
	if (err) {
		stor_buf_put(s, data, blen);
		reply_err(req, err, "write_if");
		stor_end(s);
		return;
	}
	craq_write_if_handle(s, req, &w, m.expect, m.expect_len, m.expect_crc, data, page_crc);
}

/* SHM_WRITE: the data is in the client's region. It is copied once into a
 * buffer of ours before any check: the client can still write to its
 * region, and the CRC that is checked must be the CRC of the
 * bytes the engine writes (and the chain forwards). The copy replaces the
 * socket receive the WRITE path pays.
 *
 * A chain forward (STO_WF_FORWARDED) is not copied: its bytes lie in the
 * predecessor service's arena, which does not change them until we
 * answered (craq_write.c), so we check, write and forward them in place
 * under a hold on the region. Only a sender that breaks that rule (not
 * a ChainFS service) can change them between our CRC check and the disk
 * write, and then the page CRCs we store disagree with the bytes: every
 * read of them fails its check (-CFS_ECHECKSUM), none returns them.
 * CFS_SHM_FWD_COPY=1 in the service's environment copies them as before. */
static int fwd_in_place(void)
{
	static _Atomic int v = -1; /* first callers may all compute it: the same */
	int r = atomic_load_explicit(&v, memory_order_relaxed);
	if (r < 0) {
		const char *e = getenv("CFS_SHM_FWD_COPY");
		r = !(e && !strcmp(e, "1"));
		atomic_store_explicit(&v, r, memory_order_relaxed);
	}
	return r;
}

static void handle_shm_write(struct rpc_req *req, void *arg)
{
	struct storage_service *s = arg;
	struct sto_write_req m;
	struct sto_shm_at at;
	uint32_t plen;
	uint64_t blen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	/* The message carries no bulk (one sent is the server's to free). */
	int had_bulk = rpc_req_bulk(req, &blen) != NULL || blen;
	if (had_bulk || sto_shm_write_req_decode(p, plen, &at, &m)) {
		reply_err(req, -CFS_EPROTO, "shm write: malformed request");
		return;
	}
	if (m.len == 0 || m.len > CHUNK_MAX_SIZE || m.len > at.cap) {
		reply_err(req, -EINVAL, "shm write: length");
		return;
	}
	const uint8_t *src;
	struct stor_shm_region *hold = NULL;
	int inplace = (m.flags & STO_WF_FORWARDED) && m.chain && fwd_in_place();
	int e = inplace ? stor_shm_hold(req, at.region, at.off, at.cap, (uint8_t **)&src, &hold)
			: stor_shm_lookup(req, at.region, at.off, at.cap, (uint8_t **)&src);
	if (e) {
		if (e == -EFAULT)
			LOG_WARN("storage", "shm write outside its region: peer=%s region=%llu "
				 "off=%llu cap=%llu",
				 rpc_req_peer(req), (unsigned long long)at.region,
				 (unsigned long long)at.off, (unsigned long long)at.cap);
		reply_err(req, e, e == -ESTALE ? "shm write: no such region on this connection"
					       : "shm write: outside the region");
		return;
	}
	/* Once per kind and process: shows an operator (and test_storage_shm)
	 * that clients and chain predecessors use the path. */
	static atomic_bool seen[3];
	int fwd = (m.flags & STO_WF_FORWARDED) != 0;
	if (!atomic_exchange(&seen[fwd + inplace], true))
		LOG_INFO("storage", "first shared-memory write: peer=%s forwarded=%d%s",
			 rpc_req_peer(req), fwd, inplace ? " in place" : "");
	if (inplace) {
		/* A chain forward: the bytes stay in the predecessor's arena
		 * (sc_shm_buf_get), which it leaves alone until we answered
		 * and never reuses after a forward it gave up on. */
		write_submit(req, s, &m, (void *)src, m.len, hold);
		return;
	}
	/* A chain write's copy goes where a same-host successor can read it
	 * (stor_wbuf_get): the forward then names it instead of copying it
	 * again into the arena. */
	void *data = m.chain ? stor_wbuf_get(s, m.len) : stor_buf_get(s, m.len);
	if (!data) {
		reply_err(req, -ENOMEM, "shm write: buffer");
		return;
	}
	memcpy(data, src, m.len);
	write_submit(req, s, &m, data, m.len, NULL);
}

/* ---- READ ---- */

struct read_ctx;

/* One range read on the loop thread's own ring (run to completion). */
struct read_rio {
	struct stor_ring_io io;
	struct chunk_read_io x;
	struct chunk_op op; /* when the range had to go through the engine */
	struct read_ctx *c;
	uint32_t i;
};

struct read_ctx {
	struct storage_service *s;
	struct rpc_req *req;
	uint32_t flags;
	uint32_t n;
	struct sto_read_range *rr;     /* n, decoded; in c's allocation, after it */
	/* cr, tgt, gen, off, pre: one allocation (cr's): a 4 KiB read costs a
	 * few microseconds of server CPU, and the allocator took 13 % of the
	 * samples of bench storage's async phase with one malloc per array. */
	struct chunk_read_range *cr;   /* n, engine ranges */
	struct stor_target **tgt;      /* n */
	uint64_t *gen;                 /* n: lock grants seen before the read */
	struct chunk_op *ops;          /* one per run of ranges on one target */
	size_t nops;
	_Atomic size_t pending;
	uint8_t *buf;                  /* stor_buf of buf_size; range i at off[i] before compaction */
	uint64_t buf_size;
	uint64_t *off;
	int32_t *pre;                  /* n: error decided before the read (0: read it) */
	struct read_rio *rio;          /* n, when read on the loop's ring; else NULL */
	uint8_t *shm_dst;              /* SHM_READ: the bytes go here (checked to hold
					  the sum of the ranges' lengths), not in a bulk */
	struct stor_shm_region *shm_hold; /* keeps shm_dst mapped (SHM_UNREG) */
	uint8_t **shm_v;               /* SHM_READV: n, where range i's bytes go (checked
					  to hold its len); shm_dst is then NULL */
};

static void read_ctx_free(struct read_ctx *c)
{
	free(c->cr);
	free(c->ops);
	free(c->rio);
	if (c->buf)
		stor_buf_put(c->s, c->buf, c->buf_size);
	stor_shm_release(c->shm_hold);
	free(c->shm_v);
	free(c);
}

/* A sent read reply's buffer, given back when the bytes left. */
struct sent_buf {
	struct storage_service *s;
	void *p;
	uint64_t n;
};

static void read_bulk_free(void *arg)
{
	struct sent_buf *b = arg;
	stor_buf_put(b->s, b->p, b->n);
	free(b);
}

/* Results of a read of at most this many ranges are encoded from the stack. */
#define READ_RES_STACK 16u

static void read_finish(struct read_ctx *c)
{
	struct sto_read_res res_stack[READ_RES_STACK];
	struct sto_read_res *res = c->n <= READ_RES_STACK ? res_stack
							  : xcalloc(c->n, sizeof(*res));
	if (res == res_stack)
		memset(res, 0, c->n * sizeof(*res));
	uint64_t out = 0;
	int revoked = 0;
	for (uint32_t i = 0; i < c->n; i++) {
		int r = c->pre[i] ? c->pre[i] : c->cr[i].result;
		if (r >= 0 && c->rr[i].chain && !(c->flags & STO_RF_RELAXED)) {
			uint64_t gen;
			if (craq_lock_peek(c->tgt[i]->locks, c->cr[i].id, &gen) || gen != c->gen[i])
				r = -CFS_ENOT_COMMITTED;
		}
		res[i].result = r;
		if (r == -CFS_ECORRUPT && c->rr[i].chain && c->tgt[i])
			craq_repair_note(c->s, c->tgt[i], c->rr[i].chain, c->cr[i].id);
		if (r > 0 && c->shm_v) {
			/* SHM_READV: straight to the range's place (no compaction). */
			if (!revoked && stor_shm_copy_in(c->shm_hold, c->shm_v[i],
							 c->buf + c->off[i], (size_t)r))
				revoked = 1;
			res[i].crc = c->cr[i].crc;
			res[i].commit_ver = c->cr[i].info.commit_ver;
		} else if (r > 0) {
			if (out != c->off[i])
				memmove(c->buf + out, c->buf + c->off[i], (size_t)r);
			res[i].crc = c->cr[i].crc; /* folded from the verified page CRCs */
			res[i].commit_ver = c->cr[i].info.commit_ver;
			out += (uint64_t)r;
		} else if (r == 0) {
			/* No bytes (a range at or past the chunk's end): the
			 * chunk exists all the same, at its version; version 0
			 * is how an absent chunk reads to callers that take
			 * -ENOENT as empty (a converter's chunk 0,
			 * cmd_mount.c sto_chunk_ver). */
			res[i].commit_ver = c->cr[i].info.commit_ver;
		}
	}
	struct sto_read_resp resp = { .n = c->n, .r = res };
	struct buf b;
	buf_init(&b);
	int err = sto_read_resp_encode(&b, &resp);
	if (res != res_stack)
		free(res);
	if (err) {
		reply_err(c->req, err, "read");
	} else if (c->shm_v) {
		if (revoked)
			reply_err(c->req, -ECANCELED, "shm readv: region revoked");
		else
			rpc_reply(c->req, 0, b.data, (uint32_t)b.len);
	} else if (c->shm_dst) {
		/* Copied from our buffer, after the page CRCs were verified in
		 * it: the client's memory is only ever written here, and never
		 * after the client revoked the region (it gave up on us). */
		if (stor_shm_copy_in(c->shm_hold, c->shm_dst, c->buf, (size_t)out))
			reply_err(c->req, -ECANCELED, "shm read: region revoked");
		else
			rpc_reply(c->req, 0, b.data, (uint32_t)b.len);
	} else {
		struct sent_buf *sb = xmalloc(sizeof(*sb));
		*sb = (struct sent_buf){ c->s, c->buf, c->buf_size };
		c->buf = NULL;
		rpc_reply_bulk(c->req, 0, b.data, (uint32_t)b.len, sb->p, out, read_bulk_free, sb);
	}
	buf_fini(&b);
	struct storage_service *s = c->s;
	read_ctx_free(c);
	stor_end(s);
}

static void read_op_done(struct chunk_op *op)
{
	struct read_ctx *c = op->arg;
	if (op->result < 0)
		for (size_t i = 0; i < op->nranges; i++)
			if (op->ranges[i].result >= 0)
				op->ranges[i].result = op->result;
	if (atomic_fetch_sub(&c->pending, 1) == 1)
		read_finish(c);
}

static void read_rio_done(struct stor_ring_io *io, int res)
{
	struct read_rio *x = (struct read_rio *)io;
	struct read_ctx *c = x->c;
	chunk_engine_read_end(c->tgt[x->i]->eng, &c->cr[x->i], &x->x, res);
	if (atomic_fetch_sub(&c->pending, 1) == 1)
		read_finish(c);
}

/* A range of a ring read that the engine had to take (its chunk was in
 * the middle of a journaled overwrite) ended; engine I/O thread. */
static void read_rio_op_done(struct chunk_op *op)
{
	struct read_rio *x = op->arg;
	struct read_ctx *c = x->c;
	if (op->result < 0 && c->cr[x->i].result >= 0)
		c->cr[x->i].result = op->result;
	if (atomic_fetch_sub(&c->pending, 1) == 1)
		read_finish(c);
}

/* Reads C's ranges on the loop thread's RING and answers from this thread
 * when the last completes (ring_reap): no hand-off to the engine's I/O
 * thread and back. The ring has room for every range. */
static void read_on_ring(struct read_ctx *c, struct stor_ring *ring)
{
	c->rio = xcalloc(c->n, sizeof(*c->rio));
	atomic_store(&c->pending, 1); /* ours until every range is queued */
	for (uint32_t i = 0; i < c->n; i++) {
		if (c->pre[i])
			continue;
		struct read_rio *x = &c->rio[i];
		x->c = c;
		x->i = i;
		x->io.done = read_rio_done;
		int rc = chunk_engine_read_prep(c->tgt[i]->eng, &c->cr[i], &x->x);
		if (rc == 1 && x->x.cached) {
			/* Pages in the page cache are copied here and now; only
			 * a miss costs a ring read (which then fills the cache). */
			struct iovec iov = { x->x.buf, x->x.len };
			ssize_t got = preadv2(x->x.fd, &iov, 1, (off_t)x->x.file_off, RWF_NOWAIT);
			chunk_engine_read_probed(c->tgt[i]->eng, got == (ssize_t)x->x.len);
			if (got == (ssize_t)x->x.len) {
				chunk_engine_read_end(c->tgt[i]->eng, &c->cr[i], &x->x, (int)got);
				continue;
			}
		}
		if (rc == 1) {
			atomic_fetch_add(&c->pending, 1);
			stor_ring_read(ring, &x->io, x->x.fd, x->x.buf, x->x.len, x->x.file_off);
		} else if (rc == 2) {
			atomic_fetch_add(&c->pending, 1);
			x->op = (struct chunk_op){ .type = CHUNK_OP_READ, .done = read_rio_op_done,
						   .arg = x, .ranges = &c->cr[i], .nranges = 1 };
			chunk_engine_submit(c->tgt[i]->eng, &x->op);
		}
	}
	stor_ring_submit_soon(ring);
	if (atomic_fetch_sub(&c->pending, 1) == 1)
		read_finish(c);
}

/* SHM_READV's header: every range's place in the region, checked against
 * it before anything is read. 0, or the error to reply. */
static int readv_places(struct rpc_req *req, struct read_ctx *c, uint64_t region,
			const uint64_t *offs, uint32_t n)
{
	uint8_t *base;
	int e = stor_shm_hold(req, region, 0, 0, &base, &c->shm_hold);
	c->shm_v = e ? NULL : xcalloc(n, sizeof(*c->shm_v));
	for (uint32_t i = 0; !e && i < n; i++)
		e = stor_shm_span(c->shm_hold, offs[i], c->rr[i].len, &c->shm_v[i]);
	return e;
}

/* READ (SHM 0), SHM_READ (SHM 1: the bytes go to the client's region,
 * compact) or SHM_READV (SHM 2: each range's to its own place there). */
static void handle_read_any(struct rpc_req *req, struct storage_service *s, int shm)
{
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	struct sto_read_req m;
	struct sto_shm_at at;
	/* A range takes 32 bytes on the wire (40 with its place in a
	 * READV): no more fit the payload. */
	uint32_t hdr = shm == 2 ? 20 : shm ? 8 + STO_SHM_AT_LEN : 8;
	size_t cap = plen >= hdr ? (plen - hdr) / (shm == 2 ? 40 : 32) : 0;
	if (cap > STO_MAX_BATCH)
		cap = STO_MAX_BATCH;
	struct read_ctx *c = xcalloc(1, sizeof(*c) + (cap ? cap : 1) * sizeof(*c->rr));
	c->s = s;
	c->req = req;
	c->rr = (struct sto_read_range *)(c + 1);
	uint64_t *offs = shm == 2 ? xcalloc(cap ? cap : 1, sizeof(*offs)) : NULL;
	uint64_t region = 0;
	if ((shm == 2   ? sto_shm_readv_req_decode(p, plen, &region, offs, &m, c->rr, cap)
	     : shm == 1 ? sto_shm_read_req_decode(p, plen, &at, &m, c->rr, cap)
			: sto_read_req_decode(p, plen, &m, c->rr, cap)) ||
	    m.n == 0) {
		free(offs);
		read_ctx_free(c);
		reply_err(req, -CFS_EPROTO, "read: malformed request");
		return;
	}
	if (shm == 2) {
		int e = readv_places(req, c, region, offs, m.n);
		free(offs);
		if (e) {
			read_ctx_free(c);
			if (e == -EFAULT)
				LOG_WARN("storage", "shm readv outside its region: peer=%s region=%llu",
					 rpc_req_peer(req), (unsigned long long)region);
			reply_err(req, e, e == -ESTALE ? "shm readv: no such region on this connection"
						       : "shm readv: outside the region");
			return;
		}
	}
	if (shm == 1) {
		/* Every byte asked for must fit the window before anything is
		 * read; the reply's compact bytes are at most that many. */
		uint64_t want = 0;
		for (uint32_t i = 0; i < m.n; i++)
			want += c->rr[i].len;
		int e = want > at.cap ? -EFAULT
				      : stor_shm_hold(req, at.region, at.off, at.cap, &c->shm_dst,
						       &c->shm_hold);
		if (e) {
			read_ctx_free(c);
			if (e == -EFAULT)
				LOG_WARN("storage", "shm read outside its region: peer=%s region=%llu "
					 "off=%llu cap=%llu",
					 rpc_req_peer(req), (unsigned long long)at.region,
					 (unsigned long long)at.off, (unsigned long long)at.cap);
			if (e == -ESTALE)
				reply_err(req, e, "shm read: no such region on this connection");
			else
				reply_err(req, e, "shm read: outside the region");
			return;
		}
	}
	int err = fence_witness_admit(s);
	if (err) {
		read_ctx_free(c);
		reply_err(req, err, "read");
		return;
	}
	err = 0;
	c->n = m.n;
	c->flags = m.flags;
	/* Largest alignment first, so each array starts aligned for its type. */
	uint8_t *arr = xcalloc(m.n, sizeof(*c->cr) + sizeof(*c->tgt) + sizeof(*c->gen) +
					    sizeof(*c->off) + sizeof(*c->pre));
	c->cr = (struct chunk_read_range *)arr;
	c->tgt = (struct stor_target **)(arr + m.n * sizeof(*c->cr));
	c->gen = (uint64_t *)((uint8_t *)c->tgt + m.n * sizeof(*c->tgt));
	c->off = (uint64_t *)((uint8_t *)c->gen + m.n * sizeof(*c->gen));
	c->pre = (int32_t *)((uint8_t *)c->off + m.n * sizeof(*c->off));
	/* Lay ranges out page-aligned so the engine fills them directly. */
	uint64_t total = 0;
	for (uint32_t i = 0; i < m.n; i++) {
		const struct sto_read_range *r = &c->rr[i];
		c->tgt[i] = stor_target_by_id(s, r->target);
		if (!c->tgt[i])
			c->pre[i] = -ENODEV;
		else if ((uint64_t)r->off + r->len > CHUNK_MAX_SIZE)
			c->pre[i] = -EINVAL;
		else if (r->chain && (err = craq_read_check(s, r->target, r->chain)))
			c->pre[i] = err;
		else if (!r->chain && s->mc)
			c->pre[i] = -CFS_ECHAIN_VERSION;
		c->off[i] = total;
		if (!c->pre[i])
			total += ALIGN4K(r->len);
		if (total > (256u << 20)) {
			read_ctx_free(c);
			reply_err(req, -EMSGSIZE, "read: batch over 256 MiB");
			stor_end(s);
			return;
		}
	}
	c->buf_size = total;
	c->buf = stor_buf_get(s, total);
	if (!c->buf) {
		read_ctx_free(c);
		reply_err(req, -ENOMEM, "read");
		stor_end(s);
		return;
	}
	for (uint32_t i = 0; i < m.n; i++) {
		c->cr[i].id = (struct chunk_id){ c->rr[i].ino, c->rr[i].idx };
		c->cr[i].off = c->rr[i].off;
		c->cr[i].len = c->rr[i].len;
		c->cr[i].dst = c->buf + c->off[i];
		if (!c->pre[i] && c->rr[i].chain) {
			if (craq_lock_peek(c->tgt[i]->locks, c->cr[i].id, &c->gen[i]) &&
			    !(m.flags & STO_RF_RELAXED))
				c->pre[i] = -CFS_ENOT_COMMITTED;
		}
	}
	uint32_t nread = 0;
	for (uint32_t i = 0; i < m.n; i++)
		nread += !c->pre[i];
	/* Small reads run to completion here: for them the hand-offs are the
	 * cost. Large ones go to the engine, whose I/O thread then checks the
	 * CRCs of one while this loop sends another (bench storage seq read
	 * 1 MiB x QD 8 halved when the loop thread did both). */
	struct stor_ring *ring = nread && total <= STOR_RING_MAX_BYTES
					 ? stor_ring_get(s, rpc_req_loop(req)) : NULL;
	if (ring && stor_ring_room(ring) >= nread) {
		read_on_ring(c, ring);
		return;
	}
	/* One engine op per run of consecutive ranges on one target. All ops
	 * are built before the first submit: the last completion frees c. */
	c->ops = xcalloc(m.n, sizeof(*c->ops));
	struct stor_target **tg = xcalloc(m.n, sizeof(*tg));
	size_t nops = 0;
	for (uint32_t i = 0; i < m.n;) {
		if (c->pre[i]) {
			i++;
			continue;
		}
		uint32_t j = i + 1;
		while (j < m.n && !c->pre[j] && c->tgt[j] == c->tgt[i])
			j++;
		c->ops[nops] = (struct chunk_op){ .type = CHUNK_OP_READ, .done = read_op_done,
						  .arg = c, .ranges = &c->cr[i], .nranges = j - i };
		tg[nops++] = c->tgt[i];
		i = j;
	}
	c->nops = nops;
	struct chunk_op *ops = c->ops;
	if (nops == 0) {
		free(tg);
		read_finish(c);
		return;
	}
	atomic_store(&c->pending, nops);
	for (size_t q = 0; q < nops; q++)
		chunk_engine_submit(tg[q]->eng, &ops[q]);
	free(tg);
}

static void handle_read(struct rpc_req *req, void *arg) { handle_read_any(req, arg, 0); }
static void handle_shm_read(struct rpc_req *req, void *arg) { handle_read_any(req, arg, 1); }
static void handle_shm_readv(struct rpc_req *req, void *arg) { handle_read_any(req, arg, 2); }
static void handle_shm_reg(struct rpc_req *req, void *arg)
{
	struct storage_service *s = arg;
	stor_shm_register(req, s->fixed);
}
static void handle_sc_map(struct rpc_req *req, void *arg) { stor_sc_handle_map(arg, req); }
static void handle_sc_map_many(struct rpc_req *req, void *arg)
{
	stor_sc_handle_map_many(arg, req);
}
static void handle_shm_unreg(struct rpc_req *req, void *arg)
{
	(void)arg;
	stor_shm_unregister(req);
}

/* ---- REMOVE ---- */

struct direct_remove {
	struct chunk_op op;
	struct storage_service *s;
	struct rpc_req *req;
};

static void direct_remove_done(struct chunk_op *op)
{
	struct direct_remove *r = op->arg;
	if (op->result < 0) {
		reply_err(r->req, op->result, "remove");
	} else {
		struct sto_remove_resp resp = { .removed = (uint32_t)op->result };
		struct buf b;
		buf_init(&b);
		sto_remove_resp_encode(&b, &resp);
		rpc_reply(r->req, 0, b.data, (uint32_t)b.len);
		buf_fini(&b);
	}
	struct storage_service *s = r->s;
	free(r);
	stor_end(s);
}

static void handle_remove(struct rpc_req *req, void *arg)
{
	struct storage_service *s = arg;
	struct sto_remove_req m;
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	if (sto_remove_req_decode(p, plen, &m)) {
		reply_err(req, -CFS_EPROTO, "remove: malformed request");
		return;
	}
	int err = m.begin >= m.end ? -EINVAL : fence_witness_admit(s);
	if (err) {
		reply_err(req, err, "remove");
		return;
	}
	if (m.chain) {
		craq_remove_handle(s, req, &m);
		return;
	}
	struct stor_target *t = stor_target_by_id(s, m.target);
	if (!t || s->mc) {
		reply_err(req, t ? -CFS_ECHAIN_VERSION : -ENODEV, "remove: target");
		stor_end(s);
		return;
	}
	struct direct_remove *r = xcalloc(1, sizeof(*r));
	r->s = s;
	r->req = req;
	r->op = (struct chunk_op){ .type = CHUNK_OP_REMOVE, .done = direct_remove_done, .arg = r,
				   .id = { m.ino, m.begin }, .end_idx = m.end };
	chunk_engine_submit(t->eng, &r->op);
}

/* ---- TRUNCATE ---- */

/* Chain targets only: a cut is ordered against the chunk's writes by the
 * head's chunk lock, which direct addressing (no chain) does not take. */
static void handle_truncate(struct rpc_req *req, void *arg)
{
	struct storage_service *s = arg;
	struct sto_truncate_req m;
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	if (sto_truncate_req_decode(p, plen, &m)) {
		reply_err(req, -CFS_EPROTO, "truncate: malformed request");
		return;
	}
	int err = !m.len || !m.chain ? -EINVAL : fence_witness_admit(s);
	if (err) {
		reply_err(req, err, "truncate");
		return;
	}
	craq_truncate_handle(s, req, &m);
}

/* ---- QUERY ---- */

struct query_ctx {
	struct chunk_op op;
	struct storage_service *s;
	struct rpc_req *req;
};

static void query_done(struct chunk_op *op)
{
	struct query_ctx *q = op->arg;
	if (op->result < 0) {
		reply_err(q->req, op->result, "query");
	} else {
		struct sto_query_resp r = { .idx = op->id.idx, .len = op->info.len,
					    .crc = op->info.crc, .chain_ver = op->info.chain_ver,
					    .commit_ver = op->info.commit_ver,
					    .pending_ver = op->info.pending_ver };
		struct buf b;
		buf_init(&b);
		sto_query_resp_encode(&b, &r);
		rpc_reply(q->req, 0, b.data, (uint32_t)b.len);
		buf_fini(&b);
	}
	struct storage_service *s = q->s;
	free(q);
	stor_end(s);
}

static void handle_query(struct rpc_req *req, void *arg)
{
	struct storage_service *s = arg;
	struct sto_query_req m;
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	if (sto_query_req_decode(p, plen, &m)) {
		reply_err(req, -CFS_EPROTO, "query: malformed request");
		return;
	}
	struct stor_target *t = stor_target_by_id(s, m.target);
	int err = !t ? -ENODEV : m.chain ? craq_read_check(s, m.target, m.chain) : 0;
	if (err || (err = fence_witness_admit(s))) {
		reply_err(req, err, "query");
		return;
	}
	struct query_ctx *q = xcalloc(1, sizeof(*q));
	q->s = s;
	q->req = req;
	q->op = (struct chunk_op){ .type = m.last ? CHUNK_OP_QUERY_LAST : CHUNK_OP_QUERY,
				   .done = query_done, .arg = q, .id = { m.ino, m.idx } };
	chunk_engine_submit(t->eng, &q->op);
}

/* ---- STAT ---- */

static void handle_stat(struct rpc_req *req, void *arg)
{
	struct storage_service *s = arg;
	struct sto_stat_req m;
	uint32_t plen;
	const uint8_t *p = rpc_req_payload(req, &plen);
	if (sto_stat_req_decode(p, plen, &m)) {
		reply_err(req, -CFS_EPROTO, "stat: malformed request");
		return;
	}
	struct stor_target *t = stor_target_by_id(s, m.target);
	if (!t) {
		reply_err(req, -ENODEV, "stat: target");
		return;
	}
	struct chunk_engine_stat st;
	chunk_engine_get_stat(t->eng, &st);
	struct sto_stat_resp r = { .capacity = st.capacity, .used = st.used, .chunks = st.chunks,
				   .corrupt_reads = st.corrupt_reads };
	struct buf b;
	buf_init(&b);
	sto_stat_resp_encode(&b, &r);
	rpc_reply(req, 0, b.data, (uint32_t)b.len);
	buf_fini(&b);
}

static void handle_dump(struct rpc_req *req, void *arg) { craq_dump_handle(arg, req); }
static void handle_sync_done(struct rpc_req *req, void *arg) { craq_sync_done_handle(arg, req); }
static void handle_witness(struct rpc_req *req, void *arg) { fence_witness_handle(arg, req); }

/* ---- lifecycle ---- */

uint16_t storage_service_port(const struct storage_service *s) { return rpc_server_port(s->srv); }

int storage_service_new(const struct storage_service_opts *o, struct storage_service **out,
			char *err, size_t errlen)
{
	struct storage_service *s = xcalloc(1, sizeof(*s));
	int rc;
	if (o->n_targets == 0 || o->n_targets > 999) {
		snprintf(err, errlen, "need 1..999 target directories");
		rc = -EINVAL;
		goto fail;
	}
	s->faultinj = getenv("CFS_FAULTINJ") != NULL;
	const char *fd = s->faultinj ? getenv("CFS_FAULTINJ_FORWARD_DEADLINE_MS") : NULL;
	s->fwd_deadline_ms = fd ? (uint32_t)strtoul(fd, NULL, 10) : 0;
	const char *is = s->faultinj ? getenv("CFS_FAULTINJ_IO_STALL_MS") : NULL;
	s->io_stall_ms = is ? (uint32_t)strtoul(is, NULL, 10) : 0;
	if (!s->io_stall_ms)
		s->io_stall_ms = STOR_IO_STALL_MS;
	const char *cl = getenv("CFS_CRAQ_CHECK_LATE");
	s->check_late = !cl ? 0 : !strcmp(cl, "1") ? CHECK_LATE_LOOP
			   : !strcmp(cl, "engine") ? CHECK_LATE_ENGINE : 0;
	if (s->check_late)
		LOG_INFO("storage", "chain writes are checked after their forward (CFS_CRAQ_CHECK_LATE=%s)",
			 cl);
	pthread_mutex_init(&s->link_mu, NULL);
	pthread_mutex_init(&s->rings_mu, NULL);
	pthread_mutex_init(&s->report_mu, NULL);
	pthread_cond_init(&s->link_cv, NULL);
	s->dedup = craq_dedup_new();
	s->sched = craq_sched_new();
	s->fixed = chunk_fixed_new();
	if ((rc = stor_targets_open(s, o, err, errlen)))
		goto fail;
	/* Tests shrink the repair queue (test_craq.c repair_queue_share). */
	const char *rq = s->faultinj ? getenv("CFS_FAULTINJ_REPAIR_QUEUE_MAX") : NULL;
	s->repair = craq_repair_new(rq ? strtoul(rq, NULL, 10) : 0, s->nt);
	if ((rc = craq_list_start(s))) {
		snprintf(err, errlen, "cannot start the listing threads");
		goto fail;
	}
	s->sc = stor_sc_new(s);
	struct rpc_opts ro = { .cluster_id = o->cluster_id, .secret = o->secret,
			       .secret_len = o->secret_len,
			       .nthreads = o->rpc_threads > 0 ? o->rpc_threads : 2,
			       .max_bulk = (uint64_t)CHUNK_MAX_SIZE + PAGE,
			       .max_outq = 256u << 20 };
	if ((rc = rpc_server_new(&ro, &s->srv))) {
		snprintf(err, errlen, "rpc server: %s", cfs_strerror(rc));
		goto fail;
	}
	struct rpc_handler h = { .arg = s };
	h.fn = handle_read;
	rpc_server_handle(s->srv, STO_MSG_READ, &h);
	h.fn = handle_shm_read;
	rpc_server_handle(s->srv, STO_MSG_SHM_READ, &h);
	h.fn = handle_shm_reg;
	rpc_server_handle(s->srv, STO_MSG_SHM_REG, &h);
	h.fn = handle_shm_write;
	rpc_server_handle(s->srv, STO_MSG_SHM_WRITE, &h);
	h.fn = handle_shm_unreg;
	rpc_server_handle(s->srv, STO_MSG_SHM_UNREG, &h);
	h.fn = handle_shm_readv;
	rpc_server_handle(s->srv, STO_MSG_SHM_READV, &h);
	h.fn = handle_sc_map;
	rpc_server_handle(s->srv, STO_MSG_SC_MAP, &h);
	/* CFS_TEST_SC_NO_MANY=1 (test hook): a server from before SC_MAP_MANY. */
	const char *no_many = getenv("CFS_TEST_SC_NO_MANY");
	if (!no_many || strcmp(no_many, "1")) {
		h.fn = handle_sc_map_many;
		rpc_server_handle(s->srv, STO_MSG_SC_MAP_MANY, &h);
	}
	h.fn = handle_remove;
	rpc_server_handle(s->srv, STO_MSG_REMOVE, &h);
	/* CFS_TEST_STO_NO_TRUNCATE=1 (test hook): a server from before
	 * STO_TRUNCATE. */
	const char *no_trunc = getenv("CFS_TEST_STO_NO_TRUNCATE");
	if (!no_trunc || strcmp(no_trunc, "1")) {
		h.fn = handle_truncate;
		rpc_server_handle(s->srv, STO_MSG_TRUNCATE, &h);
	}
	h.fn = handle_query;
	rpc_server_handle(s->srv, STO_MSG_QUERY, &h);
	h.fn = handle_stat;
	rpc_server_handle(s->srv, STO_MSG_STAT, &h);
	h.fn = handle_dump;
	rpc_server_handle(s->srv, STO_MSG_DUMP, &h);
	h.fn = handle_sync_done;
	rpc_server_handle(s->srv, STO_MSG_SYNC_DONE, &h);
	h.fn = handle_witness;
	rpc_server_handle(s->srv, STO_MSG_WITNESS, &h);
	h.fn = handle_write;
	h.bulk_dest = write_bulk_dest;
	h.bulk_drop = write_bulk_drop;
	rpc_server_handle(s->srv, STO_MSG_WRITE, &h);
	/* CFS_TEST_STO_NO_WRITE_IF=1 (test hook): a server from before
	 * STO_WRITE_IF. */
	const char *no_wif = getenv("CFS_TEST_STO_NO_WRITE_IF");
	if (!no_wif || strcmp(no_wif, "1")) {
		h.fn = handle_write_if;
		rpc_server_handle(s->srv, STO_MSG_WRITE_IF, &h);
	}
	if ((rc = rpc_server_start(s->srv, o->listen, err, errlen)))
		goto fail;
	if (o->advertise && *o->advertise) {
		snprintf(s->advertise, sizeof(s->advertise), "%s", o->advertise);
	} else {
		char host[48];
		snprintf(host, sizeof(host), "%.47s", o->listen);
		char *colon = strrchr(host, ':');
		if (colon)
			*colon = 0;
		snprintf(s->advertise, sizeof(s->advertise), "%s:%u", host,
			 (unsigned)rpc_server_port(s->srv));
	}
	if (o->n_mgmtd) {
		ro.nthreads = 1;
		ro.conns_per_peer = 2;
		if ((rc = rpc_client_new(&ro, &s->cli))) {
			snprintf(err, errlen, "rpc client: %s", cfs_strerror(rc));
			goto fail;
		}
		/* NULL: forwards over the socket only. 256 MiB: it holds the data
		 * of every chain write in flight here (stor_wbuf_get). */
		s->shm = sc_shm_new_arena(&ro, 256ull << 20);
		uint64_t asz;
		void *abase = sc_shm_arena_mem(s->shm, &asz);
		s->shm_fixed_id = chunk_fixed_add(s->fixed, abase, asz);
		if ((rc = mgmtd_link_start(s, o, err, errlen)))
			goto fail;
		if ((rc = fence_witness_start(s, o->heartbeat_ms))) {
			snprintf(err, errlen, "cannot start the fencing witness thread");
			goto fail;
		}
		if ((rc = stor_iowatch_start(s))) {
			snprintf(err, errlen, "cannot start the I/O watchdog thread");
			goto fail;
		}
	} else {
		for (size_t i = 0; i < s->nt; i++)
			atomic_store(&s->t[i].started, 1);
	}
	LOG_NOTICE("storage", "serving: addr=%s targets=%zu mgmtd=%zu", s->advertise, s->nt,
		   o->n_mgmtd);
	*out = s;
	return 0;
fail:
	storage_service_free(s);
	return rc;
}

void storage_service_free(struct storage_service *s)
{
	if (!s)
		return;
	atomic_store(&s->stopping, 1);
	stor_iowatch_stop(s);
	fence_witness_stop(s);
	mgmtd_link_stop(s);
	/* Requests in flight end quickly once stopping is set (chain retries
	 * give up); wait for them, bounded, before tearing down what their
	 * callbacks use. */
	for (int i = 0; i < 1000 && atomic_load(&s->inflight); i++)
		clock_sleep_ms(10);
	if (atomic_load(&s->inflight))
		LOG_WARN("storage", "stopping with requests in flight: n=%llu",
			 (unsigned long long)atomic_load(&s->inflight));
	/* Before the RPC client and the scheduler: a head's range remove
	 * starts its chain ops from a pool thread. */
	craq_list_stop(s);
	rpc_client_free(s->cli);
	chunk_fixed_remove(s->fixed, s->shm_fixed_id);
	sc_shm_free(s->shm);
	craq_sched_free(s->sched);
	rpc_server_free(s->srv);
	stor_rings_free(s); /* the loops are gone: no read is reaped any more */
	stor_sc_free(s->sc); /* the connections (and their tables) are gone */
	s->sc = NULL;
	mgmtd_client_free(s->mc);
	craq_dedup_free(s->dedup);
	craq_repair_free(s->repair);
	stor_targets_close(s);
	chunk_fixed_free(s->fixed); /* the regions and the engines are gone */
	pthread_mutex_destroy(&s->link_mu);
	pthread_mutex_destroy(&s->rings_mu);
	pthread_mutex_destroy(&s->report_mu);
	pthread_cond_destroy(&s->link_cv);
	free(s);
}
