/* rpc_int.h - internals shared by rpc_conn.c, rpc_server.c, rpc_client.c.
 *
 * struct rpc_conn is the framing engine of one connection: it reads frames
 * (header -> payload -> bulk straight into a destination), writes queued
 * frames with writev, and closes with a logged reason. The server and the
 * client embed it and supply a struct conn_ops for what frames mean.
 * Everything here is owned by the connection's loop thread, except the
 * send side: the queue fields, state's change to CONN_CLOSED, x and
 * closing are guarded by *omu, so another thread holding *omu may check
 * the connection and write a frame itself (conn_send_direct_locked); and
 * the receive side, which a caller thread may take over for a while
 * (conn_rx_claim_locked, rpc_conn.c "CALLER RECEIVE"): its fields are
 * guarded by rx_mu, held by whoever reads or parses (the loop takes it
 * around every read and close; never across a blocking wait).
 * Lock order: rx_mu before *omu.
 */
#ifndef CFS_NET_RPC_INT_H
#define CFS_NET_RPC_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/buf.h"
#include "net/frame.h"
#include "net/loop.h"
#include "net/rpc.h"
#include "net/transport.h"

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

#define RPC_RBUF_LEN (64 * 1024)        /* receive buffer; grows for big payloads */
#define RPC_HS_MAX_PAYLOAD 4096         /* limit before the handshake completes */

/* One outbound frame: header, payload and optional bulk, all borrowed by
 * the connection until done() runs (status 0: written; -CFS_ECLOSED: the
 * connection closed first). done runs on the loop thread. */
struct rpc_out {
	struct rpc_out *next;
	uint8_t hdr[FRAME_HDR_LEN];
	const uint8_t *payload;
	uint32_t plen;
	const uint8_t *bulk;
	uint64_t blen;
	uint64_t off; /* bytes of this frame already written */
	void (*done)(struct rpc_out *o, int status);
};

static inline uint64_t rpc_out_len(const struct rpc_out *o)
{
	return FRAME_HDR_LEN + (uint64_t)o->plen + o->blen;
}

enum conn_state { CONN_CONNECTING, CONN_HANDSHAKE, CONN_READY, CONN_CLOSED };
enum rx_phase { RX_HDR, RX_PAYLOAD, RX_BULK };

struct rpc_conn;

struct conn_ops {
	/* A CONN_CONNECTING connection finished connecting with ERR (0 or
	 * -errno); on 0 the role starts its handshake. */
	void (*on_connected)(struct rpc_conn *c, int err);
	/* A header passed frame_decode. Return 0, or <0 after closing/refusing. */
	int (*on_header)(struct rpc_conn *c, const struct frame_hdr *h);
	/* The payload arrived (P valid during the call). Set c->dest to receive
	 * the bulk there (NULL: the bulk is read and dropped). 0 or <0 as above. */
	int (*on_payload)(struct rpc_conn *c, const uint8_t *p, uint32_t len);
	/* The whole frame arrived. P/LEN is the payload (valid during the call);
	 * BULK_STATUS is 0 or -CFS_ECHECKSUM. 0 or <0 as above. */
	int (*on_frame)(struct rpc_conn *c, const uint8_t *p, uint32_t len, int bulk_status);
	/* The connection closed with ERR: fail what the role holds. */
	void (*on_close)(struct rpc_conn *c, int err);
	/* Writes made progress: the role may resume reading. */
	void (*on_drain)(struct rpc_conn *c);
	/* Last reference gone: free the embedding struct (after conn_fini). */
	void (*on_free)(struct rpc_conn *c);
	/* *omu held: 1 while replies are still expected on C (so the loop
	 * must keep reading when a caller thread gives the receive side back).
	 * Only roles that let callers receive (conn_rx_claim_locked) need it. */
	int (*rx_expecting)(struct rpc_conn *c);
	/* Optional. *omu and rx_mu held by a caller thread letting go of the
	 * receive side while replies are still expected (C open): 1 when the
	 * role hands the receive side, with the caller's reference, to
	 * another thread it chose (which must conn_rx_release it later); 0
	 * leaves it to the loop. ARG is conn_rx_release's. */
	int (*rx_pass)(struct rpc_conn *c, void *arg);
};

/* Counters shared by every connection of a server or client. */
struct rpc_counters {
	atomic_uint_fast64_t accepted, auth_fail, bad_input, requests, handshake_timeout;
	atomic_uint_fast64_t bulk_copied; /* bulk bytes received into rbuf and copied out */
	atomic_uint_fast64_t accepted_local; /* connections over the same-host socket */
	atomic_uint_fast64_t replies_by_caller; /* client: replies a calling thread read */
	atomic_uint_fast64_t rx_passes; /* client: receive sides passed between callers */
};

struct rpc_conn {
	struct loop *loop;             /* owner */
	struct xport *x;               /* NULL once closed */
	int fd;
	struct loop_io io;
	const struct conn_ops *ops;
	struct rpc_counters *ctr;
	enum conn_state state;         /* CONN_CLOSED set under *omu */
	atomic_int refs;               /* 1 while open, +1 per pending msg/request */
	pthread_mutex_t *omu;          /* guards the send side (see above) */
	pthread_mutex_t omu_own;       /* *omu unless the role passed its own */
	uint32_t events;               /* LOOP_* mask registered now; under *omu */
	int read_paused;               /* role asked to stop reading */
	int closing;                   /* refused: drain the queue, then close */
	int close_err;
	char peer[XPORT_ADDRSTRLEN];
	struct frame_limits lim;       /* current limits (smaller before auth) */

	/* receive ownership (rpc_conn.c "CALLER RECEIVE") */
	pthread_mutex_t rx_mu;         /* guards the receive fields below */
	int rx_loop_depth;             /* the loop thread's holds on rx_mu (loop only) */
	atomic_int rx_caller;          /* 1: a caller thread receives; set under *omu */
	int rx_idle;                   /* under *omu: nothing expected, no LOOP_IN */
	int rx_left;                   /* under rx_mu: the loop left an event to the caller */
	int rx_defer;                  /* under rx_mu: the caller met a close; the loop does it */
	int rxd_err, rxd_lvl;          /* under rx_mu: the close the caller met */
	const char *rxd_why;           /* a string literal */
	int close_posted;              /* under *omu: close_msg queued with: */
	int defer_err, defer_lvl;
	const char *defer_why;
	struct loop_msg close_msg;
	struct xport *x_orphan;        /* closed while a caller received: the
					  caller closes it when it lets go */

	/* receive */
	uint8_t *rbuf;
	size_t rcap, rpos, rlen;       /* bytes [rpos, rlen) unparsed */
	enum rx_phase phase;
	struct frame_hdr h;            /* header of the frame being received */
	struct buf pcopy;              /* payload kept across the bulk phase */
	uint8_t *dest;                 /* bulk destination; NULL drops it */
	const struct iovec *dest_iov;  /* with dest set and dest_niov > 0: the bulk is
					  scattered over these segments in order (dest is
					  the first one's base); borrowed */
	int dest_niov;
	uint64_t got;                  /* bulk bytes received */
	uint32_t crc;                  /* running CRC32C of the bulk */
	uint32_t rx_hint;              /* >0: the last frame carried a big bulk; read
					  only its header and this many payload bytes
					  (rx_hint - 1) at a frame start, so the next
					  bulk lands in its destination, not in rbuf */

	/* send (all under *omu) */
	struct rpc_out *oq_head, *oq_tail;
	uint64_t outq_bytes;
	int out_blocked;               /* last writev hit EAGAIN */
	struct loop_msg flush_msg;
	int flush_posted;
	struct loop_msg free_msg;
	struct loop_timer timer;       /* handshake or close-after-refusal deadline */
};

/* Checks SRC (cluster id and secret present and in bounds) and copies it
 * to DST with defaults for zero fields. 0 or -EINVAL. */
int rpc_opts_init(struct rpc_opts *dst, const struct rpc_opts *src);

/* Sets up C around X (taken) on LOOP and registers it. 0 or -errno (X is
 * then closed). STATE is CONN_CONNECTING or CONN_HANDSHAKE. OMU guards the
 * send side; NULL gives the connection a mutex of its own (the role may
 * pass one it also uses for its own state, e.g. the client's request
 * table). It must outlive C. */
int conn_init(struct rpc_conn *c, struct loop *loop, struct xport *x, enum conn_state state,
	      const struct conn_ops *ops, struct rpc_counters *ctr, const char *peer,
	      pthread_mutex_t *omu);
/* Queues O for sending (flushed at the end of this loop iteration). Loop
 * thread, *omu not held. */
void conn_send(struct rpc_conn *c, struct rpc_out *o);
/* The same with *omu held (loop thread). */
void conn_send_locked(struct rpc_conn *c, struct rpc_out *o);
/* Any thread, *omu held, C not closed: when the queue is empty, writes O
 * now from the calling thread. Returns 1 when all of O was written (its
 * done() is NOT called: the caller completes it), 0 when O (or its unwritten
 * rest) was queued for the loop, which then flushes it and calls done()
 * there as for conn_send (a write error closes the connection from the
 * loop). */
int conn_send_direct_locked(struct rpc_conn *c, struct rpc_out *o);
/* CALLER RECEIVE (rpc_conn.c). Any thread but the loop's, *omu held: makes
 * the calling thread C's receiver when C is ready and no other thread
 * receives; the loop then stops reading C. Returns 1 (C referenced: the
 * caller must conn_rx_release it) or 0. */
int conn_rx_claim_locked(struct rpc_conn *c);
/* The claiming thread: waits up to TIMEOUT_MS for bytes, then reads and
 * parses what came (the role's callbacks run on this thread, under rx_mu).
 * 0 (maybe nothing came), or -CFS_ECLOSED once C is closed or closing:
 * stop and release. */
int conn_rx_step(struct rpc_conn *c, int timeout_ms);
/* The claiming thread gives the receive side back (and its reference):
 * when replies are still expected to the thread the role's rx_pass picks
 * (PASS_ARG is handed to it), else to the loop; when none are, to nobody
 * until the next request (conn_rx_arm_locked). A close met while
 * receiving is passed to the loop here. Returns 1 when rx_pass took it. */
int conn_rx_release(struct rpc_conn *c, void *pass_arg);
/* Loop thread: holds rx_mu (nestable on the loop) to touch the receive
 * side, e.g. a role's current-reply pointer, while a caller may receive. */
void conn_rx_lock(struct rpc_conn *c);
void conn_rx_unlock(struct rpc_conn *c);
/* *omu held, any thread: a request is going out; make sure someone reads. */
void conn_rx_arm_locked(struct rpc_conn *c);
/* Queues a small frame whose payload is copied. 0 or -ENOMEM. */
int conn_send_copy(struct rpc_conn *c, uint16_t type, uint16_t flags, uint64_t req_id,
		   int32_t status, const void *payload, uint32_t plen);
/* Removes O from the queue if none of it was written yet: 0, or -EBUSY
 * (partly written; it stays) or -ENOENT (not queued). */
int conn_unqueue(struct rpc_conn *c, struct rpc_out *o);
/* Sends an error reply (STATUS, TEXT) to REQ_ID/TYPE, stops reading, and
 * closes once it is written (or after a second). The caller logs why. */
void conn_refuse(struct rpc_conn *c, uint64_t req_id, uint16_t type, int status,
		 const char *text);
/* Closes now: logs WHY at LVL, fails queued frames, calls on_close(ERR). */
void conn_close(struct rpc_conn *c, int err, int lvl, const char *why);
/* Malformed input: counts it, logs peer, type and reason at WARN, closes. */
void conn_bad_input(struct rpc_conn *c, int err, const char *why);
/* Recomputes the registered events (after read_paused/out changes). */
void conn_update_events(struct rpc_conn *c);
/* References keep C's memory alive; the last unref frees it from a loop
 * message, after the current batch of fd events. */
void conn_ref(struct rpc_conn *c);
void conn_unref(struct rpc_conn *c);
/* Frees the engine's buffers; called by on_free before freeing C. */
void conn_fini(struct rpc_conn *c);
/* Encodes a frame header into O->hdr from O's payload and bulk lengths. */
void conn_out_hdr(struct rpc_out *o, uint16_t type, uint16_t flags, uint64_t req_id,
		  int32_t status, uint32_t bulk_crc);

#endif
