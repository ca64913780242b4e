/* rpc.h - request/response RPC over authenticated connections.
 *
 * SERVER. rpc_server_new + rpc_server_handle (one handler per message type)
 * + rpc_server_start. N loop threads; each accepted connection lives on one
 * of them for life. A connection is served only after the handshake
 * (rpc_proto.h: HELLO, CHALLENGE, AUTH, AUTH_OK) proves the peer knows the
 * cluster secret and names the same cluster id.
 *
 * A handler is called on the connection's loop thread with a struct rpc_req
 * it now owns. It must call rpc_reply() or rpc_reply_bulk() exactly once,
 * from any thread, now or later; that releases the request. For one-way
 * messages the reply sends nothing but must still be called. Handlers must
 * not block: hand slow work to another thread and reply from there.
 * Replying with status -CFS_EPROTO means "the request was malformed": the
 * reply is sent, then the connection is closed with a logged reason. A
 * request of a type with no handler gets -CFS_EBADMSG_TYPE and the same
 * treatment. Other malformed input (bad magic, version, header crc,
 * oversize lengths, a response sent to a server) closes the connection
 * without a reply. Each case is counted in rpc_stats.bad_input. Every
 * server answers STATS (rpc_proto.h) with these counters itself, unless the
 * role registers its own handler for it (`chainfs admin rpc-stats`).
 *
 * SAME HOST. Unless no_local_socket is set, a server also listens on a
 * unix socket named from its TCP address, and a client connecting to an
 * address first tries that socket, then TCP (transport.h xport_unix).
 * Everything above (handshake, limits, CRCs, errors) is the same on both.
 *
 * CLIENT. rpc_client_new, then rpc_client_peer() per server address (a pool
 * of connections, opened on first use and re-opened after failures with
 * exponential backoff 100 ms .. 5 s), then rpc_call_async / rpc_call /
 * rpc_notify. Many requests are in flight per connection, matched by id.
 * Every rpc_call_async that returns 0 completes exactly once, by calling
 * call->done on one of the client's loop threads, with status:
 *   0 or reply status     the server's reply (0 or its -errno / -CFS_E*)
 *   -CFS_ETIMEDOUT        the deadline passed (the request is cancelled; a
 *                         late reply is discarded; a request the calling
 *                         thread wrote itself may be failed up to 10 ms
 *                         after its deadline), or connect + handshake
 *                         took longer than handshake_ms
 *   -CFS_ECLOSED          the connection closed before the reply
 *   -CFS_EAUTH            the handshake was refused (wrong secret/cluster id)
 *   -CFS_EVERSION         the server speaks another protocol major
 *   -CFS_ECHECKSUM        the reply bulk failed its CRC32C
 *   -EMSGSIZE             the reply bulk is larger than resp_bulk_cap
 *   -CFS_EUNAVAIL         the connection already has max_inflight requests
 *   -CFS_EBADMSG_TYPE     the server has no handler for the type
 *   -ECONNREFUSED etc.    connecting failed (-errno)
 * A request whose frame is still half-written at its deadline resets its
 * connection (the stream cannot skip the rest); the others on it then get
 * -CFS_ECLOSED. A reply of -CFS_EPROTO or -CFS_EBADMSG_TYPE also closes the
 * connection, as the server does; the next call opens a new one. Requests
 * made while a connection is being opened wait for it (at most
 * max_inflight of them, each within its own deadline). Nothing is retried
 * automatically: the caller decides what is idempotent. Threads: all rpc_client_* and rpc_call* functions may be
 * called from any thread except that the blocking rpc_call must not run on
 * a loop thread (-EDEADLK). Requests made by one thread on one connection
 * go out in the order it made them; when nothing else is in flight on the
 * connection (for a blocking rpc_call, also while the connection's loop
 * thread sleeps) the calling thread writes its request itself (no wake-up
 * of a loop thread), otherwise the loop thread sends it with others in one
 * write.
 * A thread blocked in rpc_call may also read the connection itself (its
 * own reply and any other that arrives meanwhile, rpc_client.c OWN
 * REPLIES); done() of async calls still runs on a loop thread.
 */
#ifndef CFS_NET_RPC_H
#define CFS_NET_RPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/buf.h"

struct rpc_server;
struct rpc_req;
struct rpc_client;
struct rpc_peer;
struct loop;

/* Shared by both sides. Zero fields take the defaults in brackets. */
struct rpc_opts {
	const char *cluster_id;     /* required; <= 255 bytes; borrowed during _new */
	const uint8_t *secret;      /* required; >= 16 bytes; copied by _new */
	size_t secret_len;
	int nthreads;               /* loop threads [1] */
	uint32_t max_payload;       /* largest payload accepted [16 MiB] */
	uint64_t max_bulk;          /* largest bulk accepted [64 MiB] */
	uint64_t max_outq;          /* queued outbound bytes before a server stops
	                               reading a connection [64 MiB] */
	uint32_t max_inflight;      /* requests in flight per connection [4096] */
	uint32_t timeout_ms;        /* client: default request deadline [10000] */
	uint32_t handshake_ms;      /* connect + handshake deadline [5000] */
	int conns_per_peer;         /* client: pool size per peer [1] */
	int idle_conn_first;        /* client: a call made outside the loop threads
	                               goes on the first connection of the pool with
	                               nothing in flight, written by the caller
	                               (rpc_client.c DIRECT SEND); with none free,
	                               round robin as without it. So blocking callers
	                               each send and read their own reply, and a lone
	                               caller keeps to one connection [0] */
	uint32_t max_backoff_ms;    /* client: longest pause between connect attempts
	                               to a peer that refuses [5000] */
	int no_local_socket;        /* 1: no same-host unix socket (transport.h
	                               xport_unix): a server listens on TCP only, a
	                               client connects over TCP only. Also forced
	                               by the environment CFS_NO_LOCAL_SOCKET=1 [0] */
};

/* Counters, all monotonically increasing; read with rpc_server_stats. */
struct rpc_stats {
	uint64_t accepted;    /* connections accepted */
	uint64_t auth_fail;   /* handshakes refused */
	uint64_t bad_input;   /* connections closed for malformed input */
	uint64_t requests;    /* requests dispatched to handlers */
	uint64_t handshake_timeout; /* connections closed before finishing the handshake */
	uint64_t bulk_copied; /* request bulk bytes that went through the receive buffer
				 and were copied to their destination (not on the wire) */
	uint64_t accepted_local; /* of accepted: over the same-host unix socket (a
				    client: connections it opened over it) */
	uint64_t replies_by_caller; /* client: replies read by a thread blocked in
				       rpc_call rather than by a loop thread */
	uint64_t rx_passes;   /* client: times a thread reading replies handed that
				 role to another blocked caller (CFS_RPC_LEADERS) */
};

/* ---- server ---- */

/* Called on the loop thread with a request it now owns (see above). */
typedef void (*rpc_handler_fn)(struct rpc_req *req, void *arg);
/* Optional: where to receive a request's bulk. Called on the loop thread
 * after the payload arrived (rpc_req_payload works) and before the bulk;
 * returns memory of at least BULK_LEN bytes, or NULL to let the server use
 * a buffer of its own (which rpc_req_take_bulk can adopt). The memory is
 * borrowed until the handler runs; if the request is dropped before that
 * (connection closed mid-bulk, bulk CRC mismatch), bulk_drop gets it back. */
typedef void *(*rpc_bulk_dest_fn)(struct rpc_req *req, uint64_t bulk_len, void *arg);
/* Hands back MEM from bulk_dest for a request whose handler never ran.
 * Loop thread; REQ's accessors still work. */
typedef void (*rpc_bulk_drop_fn)(struct rpc_req *req, void *mem, void *arg);

struct rpc_handler {
	rpc_handler_fn fn;          /* required */
	rpc_bulk_dest_fn bulk_dest; /* optional */
	rpc_bulk_drop_fn bulk_drop; /* required with bulk_dest */
	void *arg;                  /* for all three */
};

/* Creates a server (not yet listening). 0, -EINVAL (bad opts), -errno. */
int rpc_server_new(const struct rpc_opts *opts, struct rpc_server **out);
/* Registers H (copied) for message TYPE (< RPC_TYPE_MAX, not a handshake
 * type). Before rpc_server_start only. 0 or -EINVAL. */
#define RPC_TYPE_MAX 1024
int rpc_server_handle(struct rpc_server *s, uint16_t type, const struct rpc_handler *h);
/* Listens on ADDR ("ip:port", port 0 picks one) and starts the loop
 * threads. A port in use is retried for up to 5 s (a killed predecessor
 * may still hold it) before -EADDRINUSE. 0, or -EINVAL (bad address,
 * message in ERR) / -errno. */
int rpc_server_start(struct rpc_server *s, const char *addr, char *err, size_t errlen);
/* The bound port after a successful start. */
uint16_t rpc_server_port(const struct rpc_server *s);
void rpc_server_stats(const struct rpc_server *s, struct rpc_stats *out);
/* Closes every connection and stops the threads. Requests still held by
 * handlers must have been replied to first (their replies are dropped, but
 * a reply after this call is a use-after-free). NULL-safe. */
void rpc_server_free(struct rpc_server *s);

/* Request accessors: valid until the reply call, from any thread. */
uint16_t rpc_req_type(const struct rpc_req *req);
int rpc_req_oneway(const struct rpc_req *req);
/* The payload bytes (owned by the request). */
const uint8_t *rpc_req_payload(const struct rpc_req *req, uint32_t *len);
/* The received bulk (bulk_dest memory or a server buffer); NULL if none. */
const uint8_t *rpc_req_bulk(const struct rpc_req *req, uint64_t *len);
/* Takes ownership of a server-allocated bulk buffer (free() it); NULL when
 * there is none or it came from bulk_dest. */
void *rpc_req_take_bulk(struct rpc_req *req, uint64_t *len);
/* "a.b.c.d:port" of the client. */
const char *rpc_req_peer(const struct rpc_req *req);
/* The loop whose thread received REQ (and runs its handler): for a handler
 * that does its own I/O on that thread and answers from it (loop_in_thread
 * then makes the reply go out without a post). */
struct loop *rpc_req_loop(const struct rpc_req *req);

/* The oldest descriptor the client passed on REQ's connection
 * (RPC_CALL_SEND_FD; the caller owns it), or -EBADF (none; always over
 * TCP). The handler's thread only, before it replies. */
int rpc_req_take_fd(struct rpc_req *req);
/* One pointer of the role's per connection (e.g. shared memory the client
 * registered on it): rpc_req_conn_data returns it (NULL until set);
 * rpc_req_set_conn_data sets it once, with FREE_FN(DATA) called when the
 * connection's memory goes, after every request of it was replied to.
 * The handler's (loop) thread; 0, or -EEXIST when already set. The data
 * itself may be read from any thread while a request of the connection
 * is unreplied. */
void *rpc_req_conn_data(const struct rpc_req *req);
int rpc_req_set_conn_data(struct rpc_req *req, void *data, void (*free_fn)(void *));

/* Replies with STATUS (0 or negative) and PAYLOAD (copied before return;
 * may be NULL with LEN 0). Consumes REQ. Any thread. */
void rpc_reply(struct rpc_req *req, int status, const void *payload, uint32_t len);
/* Same plus BULK: borrowed until DONE(DONE_ARG) runs on the loop thread,
 * after the bytes were written or the connection closed. DONE may be NULL
 * for memory that outlives the server. The bulk carries a CRC32C when the
 * request asked for one. */
void rpc_reply_bulk(struct rpc_req *req, int status, const void *payload, uint32_t len,
		    const void *bulk, uint64_t bulk_len, void (*done)(void *), void *done_arg);
/* Replies with STATUS and an error payload carrying TEXT. */
void rpc_reply_error(struct rpc_req *req, int status, const char *text);

/* ---- client ---- */

struct rpc_result {
	int status;             /* see the list above */
	const uint8_t *payload; /* reply payload; valid only during done() */
	uint32_t payload_len;
	uint64_t bulk_len;      /* bytes written into resp_bulk */
};

typedef void (*rpc_done_fn)(void *arg, const struct rpc_result *res);

enum rpc_call_flags {
	RPC_CALL_BULK_CRC = 1 << 0, /* CRC32C on the request bulk and ask for it on the reply */
	/* Pass send_fd to the server with the request (SCM_RIGHTS; same-host
	 * unix connections only: over TCP the request goes without it and the
	 * server's rpc_req_take_fd finds none). Concurrent SEND_FD calls on
	 * one connection may pair descriptors and requests crosswise: the
	 * caller sends one at a time. */
	RPC_CALL_SEND_FD = 1 << 1,
};

struct rpc_call {
	uint16_t type;
	uint32_t timeout_ms;       /* 0: the client default */
	uint32_t flags;            /* RPC_CALL_* */
	const void *payload;       /* copied before rpc_call_async returns */
	uint32_t payload_len;
	const void *bulk;          /* borrowed until done runs */
	uint64_t bulk_len;
	void *resp_bulk;           /* reply bulk lands here; borrowed until done runs */
	uint64_t resp_bulk_cap;
	/* Or, with resp_niov > 0 (resp_bulk and resp_bulk_cap then unused): the
	 * reply bulk is scattered over these segments in order, read from the
	 * socket straight into them; the array and the memory are borrowed
	 * until done runs. A bulk longer than their total is -EMSGSIZE. */
	const struct iovec *resp_iov;
	int resp_niov;
	rpc_done_fn done;          /* required for rpc_call_async */
	void *arg;
	int send_fd;               /* with RPC_CALL_SEND_FD: borrowed until done runs */
};

/* Creates a client with its loop threads. 0, -EINVAL, -errno. */
int rpc_client_new(const struct rpc_opts *opts, struct rpc_client **out);
/* Completes every outstanding request with -CFS_ECLOSED, closes the
 * connections and joins the threads. Not on a loop thread. NULL-safe. */
void rpc_client_free(struct rpc_client *c);
/* The client's counters: accepted counts connections it opened (connect
 * started), accepted_local those over the same-host socket, bad_input
 * replies it dropped as malformed, replies_by_caller those its blocked
 * callers read themselves (OWN REPLIES in rpc_client.c); the rest 0. Any thread. */
void rpc_client_stats(const struct rpc_client *c, struct rpc_stats *out);
/* Returns the peer for ADDR ("ip:port"), creating it on first use; the
 * handle lives until rpc_client_free. 0 or -EINVAL (message in ERR). */
int rpc_client_peer(struct rpc_client *c, const char *addr, struct rpc_peer **out,
		    char *err, size_t errlen);
/* Sends CALL. 0: done will run exactly once (when called on one of this
 * client's loop threads, possibly before this returns). <0: nothing was
 * sent and done will not run (-EINVAL: oversize payload or bulk, no done;
 * -ENOMEM; -CFS_ECLOSED: the client is being freed). */
int rpc_call_async(struct rpc_peer *p, const struct rpc_call *call);
/* Blocking wrapper: returns the completion status. The reply payload is
 * copied into RESP (may be NULL); *BULK_LEN (may be NULL) gets the bulk
 * bytes received. call->done is ignored. */
int rpc_call(struct rpc_peer *p, const struct rpc_call *call, struct buf *resp,
	     uint64_t *bulk_len);
/* Sends a one-way message (no reply, no completion). Dropped silently if
 * the connection fails first. 0 or -EINVAL / -ENOMEM. */
int rpc_notify(struct rpc_peer *p, uint16_t type, const void *payload, uint32_t len);

#endif
