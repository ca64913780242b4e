/* mgmtd_client.h - what every ChainFS service and client runs to take part
 * in a cluster: registration, heartbeats, fencing and the routing cache.
 *
 * A mgmtd_client, once created, runs two threads until mgmtd_client_free:
 *
 *   heartbeat thread  registers the node (type, advertised address, for
 *                     storage its target reports), then sends a heartbeat
 *                     every heartbeat_ms carrying the current target
 *                     reports (mgmtd_client_set_targets sends one at once).
 *                     If mgmtd forgot the node it registers again. It calls
 *                     on_fence.
 *   routing thread    keeps the routing cache fresh with long-polls ("give
 *                     me routing newer than V, or wait up to poll_wait_ms"),
 *                     so a change reaches it within about a second. It
 *                     calls on_routing.
 *
 * Both follow redirects and fail over between the mgmtd addresses
 * (mgmtd_conn.h), retrying forever with a short pause; the client never
 * gives up on its own.
 *
 * FENCING. The node is FENCED when its last successful heartbeat (or
 * registration) was sent more than fence_ms ago, or none succeeded yet.
 * mgmtd declares a node failed after its heartbeat timeout T; with
 * fence_ms = T/2 (the default is 5000 for T = 10 s) a node partitioned
 * from mgmtd stops serving well before mgmtd hands its role to another
 * replica. A fenced service must answer requests with -CFS_EFENCED until
 * it is unfenced. mgmtd_client_fenced() computes the state from the clock
 * at the call, so it is exact; on_fence reports each change, at most one
 * heartbeat RPC timeout (fence_ms / 4, at least 100 ms) late. A client
 * starts fenced without a call; its first call is on_fence(false) after
 * the first registration succeeded.
 *
 * ROUTING SNAPSHOTS. Routing info is handed out as refcounted immutable
 * snapshots (struct mgmtd_routing): mgmtd_client_routing() returns a new
 * reference the caller releases with mgmtd_routing_put(); the route_info
 * inside never changes and stays valid until the last reference is put,
 * on any thread. Versions of successive snapshots strictly increase.
 *
 * CALLBACKS run on the client's own threads (on_routing on the routing
 * thread, on_fence on the heartbeat thread), one at a time per kind, in
 * order. They must return quickly and must not call mgmtd_client_free;
 * they may call every other function here.
 */
#ifndef CFS_MGMTD_MGMTD_CLIENT_H
#define CFS_MGMTD_MGMTD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mgmtd/mgmtd_proto.h"
#include "mgmtd/routing.h"

struct mgmtd_client;
struct mgmtd_routing;

/* SNAP is borrowed for the call: take a reference (mgmtd_routing_get) to
 * keep it. */
typedef void (*mgmtd_routing_fn)(void *arg, struct mgmtd_routing *snap);
/* FENCED: true when the node just became fenced, false when unfenced. */
typedef void (*mgmtd_fence_fn)(void *arg, bool fenced);

/* Zero fields take the defaults in brackets. */
struct mgmtd_client_opts {
	const char *const *mgmtd_addrs; /* 1..MGMTD_CONN_MAX_ADDRS "ip:port"; copied */
	size_t n_mgmtd;
	const char *cluster_id; /* copied */
	const uint8_t *secret;  /* >= 16 bytes; copied */
	size_t secret_len;
	enum route_node_type type;                 /* 0: do not register (routing cache only; never
	                                              fenced-checked: mgmtd_client_fenced is false) */
	uint32_t node_id;                          /* 0: mgmtd assigns one (read it back with
	                                              mgmtd_client_node_id and persist it) */
	const char *addr;                          /* the node's advertised "ip:port"; required
	                                              when type != 0; copied */
	uint32_t heartbeat_ms;                     /* [1000] */
	uint32_t fence_ms;                         /* [5000]: T/2 of mgmtd's heartbeat timeout */
	uint32_t poll_wait_ms;                     /* long-poll hold time [5000] */
	const struct mgmtd_target_report *targets; /* initial reports; copied */
	size_t n_targets;                          /* <= MGMTD_MAX_NODE_TARGETS */
	mgmtd_routing_fn on_routing;               /* may be NULL */
	mgmtd_fence_fn on_fence;                   /* may be NULL */
	void *cb_arg;
};

/* Starts the client (it registers in the background: see
 * mgmtd_client_wait_registered). 0, or -EINVAL (bad option; message in
 * ERR) / -errno. */
int mgmtd_client_new(const struct mgmtd_client_opts *o, struct mgmtd_client **out, char *err,
                     size_t errlen);
/* Stops both threads (no callback runs after it returns) and frees the
 * client. Snapshots still referenced stay valid. Not from a callback.
 * NULL-safe. Sends nothing: mgmtd notices the silence after T. */
void mgmtd_client_free(struct mgmtd_client *c);

/* The node id (0 until the first registration succeeded). Any thread. */
uint32_t mgmtd_client_node_id(struct mgmtd_client *c);
/* See FENCING above. Any thread. */
bool mgmtd_client_fenced(struct mgmtd_client *c);
/* When the reply of the last successful heartbeat (or registration)
 * arrived, clock_mono_ms(); 0 before the first. Any thread. */
uint64_t mgmtd_client_last_reply_ms(struct mgmtd_client *c);
/* The fence_ms in force (the option or its default). Any thread. */
uint32_t mgmtd_client_fence_ms(const struct mgmtd_client *c);
/* Waits until registered. 0 or -CFS_ETIMEDOUT. Any thread but the
 * client's own. */
int mgmtd_client_wait_registered(struct mgmtd_client *c, uint32_t timeout_ms);

/* Replaces the target reports (copied) and wakes the heartbeat thread so
 * they reach mgmtd at once. 0 or -EINVAL (too many, bad slot or state).
 * Any thread. */
int mgmtd_client_set_targets(struct mgmtd_client *c, const struct mgmtd_target_report *t, size_t n);

/* A new reference to the newest snapshot, or NULL before the first one
 * arrived. Any thread. */
struct mgmtd_routing *mgmtd_client_routing(struct mgmtd_client *c);
/* Waits until the cached routing version is >= MIN_VERSION (1: any).
 * 0 or -CFS_ETIMEDOUT. Any thread but the client's own. */
int mgmtd_client_wait_routing(struct mgmtd_client *c, uint64_t min_version, uint32_t timeout_ms);
const struct route_info *mgmtd_routing_info(const struct mgmtd_routing *snap);
uint64_t mgmtd_routing_version(const struct mgmtd_routing *snap);
/* Takes another reference; returns SNAP. Any thread. */
struct mgmtd_routing *mgmtd_routing_get(struct mgmtd_routing *snap);
/* Drops a reference; the last one frees. NULL-safe. Any thread. */
void mgmtd_routing_put(struct mgmtd_routing *snap);

#endif
