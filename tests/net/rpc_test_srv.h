/* rpc_test_srv.h - an RPC server fixture for the net tests: handlers that
 * answer on the loop thread, on a pool of worker threads, or that hold a
 * request until the test releases it (to provoke timeouts, late replies
 * and cut connections while calls are pending).
 *
 * Not thread-safe to start or stop; rpc_test_srv_held and
 * rpc_test_srv_release may be called from any thread while it runs.
 * Failures to start abort the test (cmocka assertions). */
#ifndef CFS_TESTS_RPC_TEST_SRV_H
#define CFS_TESTS_RPC_TEST_SRV_H

#include <stdint.h>

#include "net/rpc.h"

enum rpc_test_where {
	RPC_TEST_LOOP,   /* fn runs on the server's loop thread */
	RPC_TEST_WORKER, /* fn runs on one of the worker threads */
	RPC_TEST_HOLD,   /* kept until rpc_test_srv_release; fn unused */
};

struct rpc_test_route {
	uint16_t type;
	enum rpc_test_where where;
	void (*fn)(struct rpc_req *req); /* must reply to REQ */
};

struct rpc_test_srv {
	struct rpc_server *rpc;
	uint16_t port; /* listening on 127.0.0.1:port */
	struct rpc_test_srv_priv *priv;
};

/* Starts a server with O's options on 127.0.0.1 (a free port) and
 * NWORKERS worker threads, answering the NROUTES types of ROUTES. The
 * worker queue and the held list are bounded; past them a request gets
 * -CFS_EUNAVAIL. Stop with rpc_test_srv_stop. */
struct rpc_test_srv *rpc_test_srv_start(const struct rpc_opts *o, int nworkers,
                                        const struct rpc_test_route *routes, int nroutes);

/* How many requests are held now. */
int rpc_test_srv_held(struct rpc_test_srv *s);

/* Waits until at least N requests are held or TIMEOUT_MS passed; returns
 * how many are held then. A request a client sent reaches the holder only
 * when the server's loop thread has read it, which on a loaded host may
 * be well after the call returned (timed out): a count taken at once
 * would depend on the scheduler. */
int rpc_test_srv_wait_held(struct rpc_test_srv *s, int n, int timeout_ms);

/* Answers every held request with status 0: with REPLY/LEN, or with the
 * request's own payload when REPLY is NULL. */
void rpc_test_srv_release(struct rpc_test_srv *s, const void *reply, uint32_t len);

/* Releases what is held (own payloads), joins the workers, frees S. */
void rpc_test_srv_stop(struct rpc_test_srv *s);

/* Options for a test's servers and clients: CLUSTER_ID and SECRET (both
 * borrowed for as long as the options are used), one loop thread. */
struct rpc_opts rpc_test_opts(const char *cluster_id, const char *secret);

/* Fills B (64 bytes or more) with the payload of call I of caller ID,
 * 8 to 63 bytes that start with ID and I (16 bits, LE) and differ per
 * call. Returns its length. */
uint32_t rpc_test_payload(uint8_t *b, int id, int i);

/* Calls CALL on P (reply into RESP, may be NULL) until it succeeds, at
 * most TRIES times 20 ms apart: a client reconnecting once a cut heals.
 * Returns the last call's result. */
int rpc_test_call_retry(struct rpc_peer *p, const struct rpc_call *call, struct buf *resp,
                        int tries);

/* A client with options O (a server's port is only known once started)
 * and its peer for 127.0.0.1:PORT in *P. Aborts the test on error. */
struct rpc_client *rpc_test_client(const struct rpc_opts *o, uint16_t port, struct rpc_peer **p);

#endif
